"""Writes for accounts: a user's profile and their API keys."""

import hashlib
import secrets

from django.utils import timezone

from webchat.accounts.models import ApiKey, Profile
from webchat.chat.validation import ID_MAX, ChatInputError, validate_text

API_KEY_PREFIX = "wc-"


def profile_ensure(*, user) -> Profile:
    """Return the user's profile, creating it with defaults the first time."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def profile_update(*, user, training_consent_default: bool) -> Profile:
    """Set the user's default training consent for new conversations."""
    profile = profile_ensure(user=user)
    profile.training_consent_default = bool(training_consent_default)
    profile.save(update_fields=["training_consent_default"])
    return profile


def users_deactivate(*, users) -> int:
    """Deactivate the given users (a queryset), one save each, so that each save closes that
    user's open chat sockets at once (webchat.chat.signals) as deactivating one user in the form
    does; a bulk `update(is_active=False)` sends no signal, and its sockets would close only at
    their next session re-check (webchat.chat.sockets.AUTH_RECHECK_S).

    Returns:
        How many were active and are now deactivated.
    """
    count = 0
    for user in users.filter(is_active=True):
        user.is_active = False
        user.save(update_fields=["is_active"])
        count += 1
    return count


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, user, name: str = "") -> tuple[ApiKey, str]:
    """A new API key. Returns the row and the key itself, which is never stored or shown again."""
    name = validate_text(name or "", field="name", max_chars=100, allow_empty=True)
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name, prefix=raw[:10], key_hash=_hash_key(raw))
    return key, raw


def api_key_revoke(*, user, key_id) -> None:
    """Revoke one of the user's keys; ChatInputError "not_found" for any other id."""
    if isinstance(key_id, str) and key_id.isascii() and key_id.isdigit() and len(key_id) < 19:
        key_id = int(key_id)
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not 0 < key_id <= ID_MAX:
        raise ChatInputError("not_found", "No such API key.")
    updated = ApiKey.objects.filter(pk=key_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not updated:
        raise ChatInputError("not_found", "No such API key.")


def api_key_authenticate(*, raw_key: str):
    """The active user a key belongs to, or None (unknown, revoked, or user deactivated)."""
    if not raw_key or not raw_key.startswith(API_KEY_PREFIX):
        return None
    key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=_hash_key(raw_key), revoked_at__isnull=True)
        .first()
    )
    if key is None or not key.user.is_active:
        return None
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key.user
