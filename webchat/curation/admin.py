from django.contrib import admin

from webchat.curation.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "sha256", "created_at")
