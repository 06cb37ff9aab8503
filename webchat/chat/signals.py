"""Open chat sockets follow the account: logging out closes that session's sockets, saving a
user as inactive closes all of theirs (webchat.chat.sockets)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save

from webchat.chat.sockets import sockets_close


def _on_logout(sender, request, user, **kwargs):
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        sockets_close(session_key=session_key)


def _on_user_saved(sender, instance, created, **kwargs):
    if not created and not instance.is_active:
        sockets_close(user_id=instance.pk)


def connect() -> None:
    user_logged_out.connect(_on_logout, dispatch_uid="webchat.chat.sockets.logout")
    post_save.connect(
        _on_user_saved, sender=get_user_model(), dispatch_uid="webchat.chat.sockets.deactivate"
    )
