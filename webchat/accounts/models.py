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


class ApiKey(models.Model):
    """A key for the OpenAI-compatible HTTP API. Only a hash is stored; the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(
        max_length=16, help_text="The key's first characters, to tell keys apart."
    )
    # SHA-256 is enough here: keys are 256-bit random, so there is nothing to brute-force.
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
