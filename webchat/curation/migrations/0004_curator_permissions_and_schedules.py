from django.db import migrations

from webchat.curation.permissions import sync_curator_group_so_far

# The learning loop's schedules, editable (interval, enabled) under "Periodic tasks" in the admin.
SCHEDULES = [
    ("curation: mine new consented conversations", "worker.schedules.mine_new_conversations", 1),
    (
        "curation: learning loop (dataset, fine-tune, evaluate, promote)",
        "worker.schedules.learning_loop",
        24,
    ),
]


def add_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, hours in SCHEDULES:
        every, _ = IntervalSchedule.objects.get_or_create(every=hours, period="hours")
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": every, "queue": "cpu", "enabled": True}
        )


def remove_schedules(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[name for name, _, _ in SCHEDULES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0003_samples_jobs_audit"),
        ("registry", "0002_promotion"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(sync_curator_group_so_far, migrations.RunPython.noop),
        migrations.RunPython(add_schedules, remove_schedules),
    ]
