"""Users in the admin: usage per user and per day, deactivation, per-user limits, API keys."""

from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import User
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from webchat.accounts.models import ApiKey, Profile
from webchat.accounts.services import users_deactivate


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "training_consent_default",
        "rate_limit_per_minute",
        "max_tokens_per_reply",
    )
    search_fields = ("user__username",)


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    verbose_name = "limits and settings"
    verbose_name_plural = "limits and settings"
    fields = ("rate_limit_per_minute", "max_tokens_per_reply", "training_consent_default")


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields  # revoking is the keys page's action; a revoked key stays revoked

    def has_add_permission(self, request, obj=None):
        return False  # keys are created by their owner, who alone sees them once


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin plus what staff need to run the chat: who uses how much, limits,
    and turning an account off (its sessions and API keys stop working at once)."""

    inlines = [ProfileInline, ApiKeyInline]
    list_display = (
        "username",
        "is_active",
        "is_staff",
        "messages_24h",
        "tokens_24h",
        "messages_total",
        "rate_limit",
        "token_cap",
        "last_login",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")
    actions = ["deactivate_users", "activate_users"]
    readonly_fields = ("usage_by_day",)
    fieldsets = DjangoUserAdmin.fieldsets + (
        ("Usage (last 14 days)", {"fields": ("usage_by_day",)}),
    )

    def get_queryset(self, request):
        since = timezone.now() - timedelta(hours=24)
        recent = Q(conversations__messages__created_at__gte=since)
        user_turn = Q(conversations__messages__role="user")
        return (
            super()
            .get_queryset(request)
            .select_related("profile")
            .annotate(
                n_messages=Count("conversations__messages", filter=user_turn, distinct=True),
                n_messages_24h=Count(
                    "conversations__messages", filter=user_turn & recent, distinct=True
                ),
                n_tokens_24h=Sum("conversations__messages__completion_tokens", filter=recent),
            )
        )

    @admin.display(description="messages 24 h", ordering="n_messages_24h")
    def messages_24h(self, user):
        return user.n_messages_24h

    @admin.display(description="tokens 24 h", ordering="n_tokens_24h")
    def tokens_24h(self, user):
        return user.n_tokens_24h or 0

    @admin.display(description="messages", ordering="n_messages")
    def messages_total(self, user):
        return user.n_messages

    @admin.display(description="rate/min")
    def rate_limit(self, user):
        profile = getattr(user, "profile", None)
        return getattr(profile, "rate_limit_per_minute", None) or "default"

    @admin.display(description="max tokens")
    def token_cap(self, user):
        profile = getattr(user, "profile", None)
        return getattr(profile, "max_tokens_per_reply", None) or "default"

    @admin.display(description="usage by day")
    def usage_by_day(self, user):
        from webchat.chat.selectors import user_usage

        if not user.pk:
            return "—"
        rows = user_usage(user=user)
        if not rows:
            return "No messages in the last 14 days."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (r["day"], r["messages"], r["replies"], r["prompt_tokens"], r["completion_tokens"])
                for r in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>day</th><th>messages</th><th>replies</th>"
            "<th>prompt tokens</th><th>reply tokens</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    def has_change_permission(self, request, obj=None):
        # Only a superuser changes a superuser (password, activity, permissions): otherwise
        # anyone who may edit users could lock out or take over the site's owners.
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        # Nor does anyone else make a superuser, themselves included.
        return fields if request.user.is_superuser else (*fields, "is_superuser")

    def _changeable(self, request, queryset):
        """The selected users this staff member may switch on or off, with a warning for the
        rest (their own account; superusers, unless they are one)."""
        if not request.user.is_superuser and queryset.filter(is_superuser=True).exists():
            messages.error(request, "Only a superuser can activate or deactivate a superuser.")
            queryset = queryset.exclude(is_superuser=True)
        return queryset

    @admin.action(
        description="Deactivate selected users (they are logged out of chat and API)",
        permissions=("change",),
    )
    def deactivate_users(self, request, queryset):
        queryset = self._changeable(request, queryset)
        count = users_deactivate(users=queryset.exclude(pk=request.user.pk))
        if queryset.filter(pk=request.user.pk).exists():
            messages.warning(request, "You cannot deactivate your own account.")
        messages.success(request, f"Deactivated {count} user(s).")

    @admin.action(description="Activate selected users", permissions=("change",))
    def activate_users(self, request, queryset):
        count = self._changeable(request, queryset).update(is_active=True)
        messages.success(request, f"Activated {count} user(s).")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "name", "prefix")
    # revoked_at too: a key is revoked by the action below and can never be revived
    readonly_fields = (
        "user",
        "name",
        "prefix",
        "key_hash",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected keys", permissions=("change",))
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} key(s).")
