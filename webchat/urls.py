from django.contrib import admin
from django.urls import include, path

from webchat.health import healthz
from webchat.metrics import metrics_view

admin.site.site_header = "webchat curation"
admin.site.site_title = "webchat admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("webchat.accounts.urls")),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("v1/", include("webchat.api.urls")),
    path("", include("webchat.chat.urls")),
]
