from webchat.accounts.models import Profile


def profile_ensure(*, user) -> Profile:
    """Return the user's profile, creating it with defaults the first time."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile
