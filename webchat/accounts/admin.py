from django.contrib import admin

from webchat.accounts.models import Profile


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "training_consent_default",
        "rate_limit_per_minute",
        "max_tokens_per_reply",
    )
    search_fields = ("user__username",)
