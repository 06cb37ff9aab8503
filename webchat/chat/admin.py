from django.contrib import admin

from webchat.chat.models import Conversation, Feedback, Message


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "owner", "training_consent", "updated_at")
    list_filter = ("training_consent",)
    search_fields = ("title", "owner__username")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "completion_tokens", "created_at")
    list_filter = ("role", "status")


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("id", "message", "user", "rating", "reason", "created_at")
    list_filter = ("rating", "reason")
