"""Fixtures of the webchat tests."""

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Test accounts hash their passwords with MD5: the default PBKDF2 costs about a second per
    account on a loaded 2-core machine, and these tests create several accounts each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
