from django.urls import path

from webchat.chat import share_views, views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("c/<int:conversation_id>/", views.index, name="conversation"),
    path(
        "c/<int:conversation_id>/export.json",
        views.conversation_export,
        {"fmt": "json"},
        name="export_json",
    ),
    path(
        "c/<int:conversation_id>/export.md",
        views.conversation_export,
        {"fmt": "md"},
        name="export_md",
    ),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path(
        "conversations/<int:conversation_id>/rename",
        views.conversation_rename,
        name="conversation_rename",
    ),
    path(
        "conversations/<int:conversation_id>/settings",
        views.conversation_update,
        name="conversation_update",
    ),
    path(
        "conversations/<int:conversation_id>/delete",
        views.conversation_delete,
        name="conversation_delete",
    ),
    path(
        "conversations/<int:conversation_id>/shares",
        share_views.conversation_shares,
        name="conversation_shares",
    ),
    path(
        "shares/<int:shared_link_id>/revoke",
        share_views.shared_link_revoke,
        name="shared_link_revoke",
    ),
    path("s/<slug:token>/", share_views.shared_page, name="shared"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/export.json", views.data_export, name="data_export"),
]
