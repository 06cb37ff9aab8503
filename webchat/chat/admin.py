"""Conversations, messages and feedback in the admin. Their pages show conversation content, so
every access is written to the curation audit log. What users wrote, who owns a conversation and
whether they consented to training use are theirs: staff read them here and cannot change them."""

from django.contrib import admin

from webchat.chat.models import Conversation, Feedback, Message
from webchat.curation.admin.audit import AuditedContentAdmin


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ("id", "parent", "role", "status", "content", "completion_tokens", "created_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(AuditedContentAdmin):
    list_display = ("id", "title", "owner", "training_consent", "model_version", "updated_at")
    list_filter = ("training_consent",)
    search_fields = ("title", "owner__username")
    list_select_related = ("owner", "model_version")
    readonly_fields = ("owner", "title", "system_prompt", "training_consent", "created_at")
    inlines = [MessageInline]
    audit_view = "chat admin: conversation"
    audit_conversation = "pk"


@admin.register(Message)
class MessageAdmin(AuditedContentAdmin):
    list_display = (
        "id",
        "conversation",
        "role",
        "status",
        "model_version",
        "completion_tokens",
        "created_at",
    )
    list_filter = ("role", "status")
    search_fields = ("content", "conversation__owner__username")
    list_select_related = ("conversation", "model_version")
    readonly_fields = [f.name for f in Message._meta.fields]
    audit_view = "chat admin: message"


@admin.register(Feedback)
class FeedbackAdmin(AuditedContentAdmin):
    """A thumbs-down with a corrected reply is a correction: (prompt, rejected, corrected)."""

    list_display = (
        "id",
        "user",
        "rating",
        "reason",
        "prompt",
        "reply",
        "corrected",
        "consent",
        "created_at",
    )
    list_filter = ("rating", "reason", "message__conversation__training_consent")
    search_fields = ("comment", "corrected_reply", "message__content", "user__username")
    list_select_related = ("user", "message__parent", "message__conversation")
    readonly_fields = [f.name for f in Feedback._meta.fields]
    audit_view = "chat admin: feedback"
    audit_conversation = "message.conversation_id"

    @admin.display(description="user turn")
    def prompt(self, feedback):
        parent = feedback.message.parent
        return (parent.content[:80] if parent else "") or "—"

    @admin.display(description="reply")
    def reply(self, feedback):
        return feedback.message.content[:80] or "—"

    @admin.display(description="correction")
    def corrected(self, feedback):
        return feedback.corrected_reply[:80] or "—"

    @admin.display(description="consent", boolean=True)
    def consent(self, feedback):
        return feedback.message.conversation.training_consent
