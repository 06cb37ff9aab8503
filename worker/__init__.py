"""Celery app and tasks: the bridge between webchat/ and modeling/."""
