from django.conf import settings
from django.db import models


class Profile(models.Model):
    """Per-user settings and the limits staff may set for one user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    training_consent_default = models.BooleanField(
        default=False,
        help_text="Default for new conversations: may they be used to improve the model?",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty means the site default."
    )
    max_tokens_per_reply = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cap on max_new_tokens; empty means the site default."
    )

    def __str__(self) -> str:
        return f"profile of {self.user}"
