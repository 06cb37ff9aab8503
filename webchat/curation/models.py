from django.conf import settings
from django.db import models


class Dataset(models.Model):
    """A frozen, hashed JSONL snapshot of approved samples plus a share of clean data."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    filters = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="curation_dataset_version")
        ]
        permissions = [("build_dataset", "Can build a dataset version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"
