"""The loop's schedules (django-celery-beat's periodic tasks) in the admin, with their actions
confined to those who may change them: the package declares no permissions on its actions, so
anyone who may only view the schedules could otherwise switch them or run them at will."""

import functools

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask


def needs_change_permission(action):
    """The same admin action, offered only to users with the model's change permission."""

    @functools.wraps(action)
    def guarded(model_admin, request, queryset):
        return action(model_admin, request, queryset)

    guarded.allowed_permissions = ("change",)
    return guarded


class GuardedPeriodicTaskAdmin(PeriodicTaskAdmin):
    enable_tasks = needs_change_permission(PeriodicTaskAdmin.enable_tasks)
    disable_tasks = needs_change_permission(PeriodicTaskAdmin.disable_tasks)
    toggle_tasks = needs_change_permission(PeriodicTaskAdmin.toggle_tasks)
    run_tasks = needs_change_permission(PeriodicTaskAdmin.run_tasks)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, GuardedPeriodicTaskAdmin)
