"""The loop's schedules (django-celery-beat's periodic tasks) in the admin, with their actions
confined to those who may change them: the package declares no permissions on its actions, so
anyone who may only view the schedules could otherwise switch them or run them at will."""

import functools

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

GUARDED_ACTIONS = ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")


def needs_change_permission(action):
    """The same admin action, offered only to users with the model's change permission."""

    @functools.wraps(action)
    def guarded(model_admin, request, queryset):
        return action(model_admin, request, queryset)

    guarded.allowed_permissions = ("change",)
    return guarded


GuardedPeriodicTaskAdmin = type(
    "GuardedPeriodicTaskAdmin",
    (PeriodicTaskAdmin,),
    {name: needs_change_permission(getattr(PeriodicTaskAdmin, name)) for name in GUARDED_ACTIONS},
)

admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, GuardedPeriodicTaskAdmin)
