from django.db import migrations

from webchat.curation.permissions import sync_curator_group_so_far


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="curator").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0001_initial"),
        ("chat", "0001_initial"),
        ("registry", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(sync_curator_group_so_far, remove_group)]
