"""The permissions the `curator` group holds: exactly what curation work needs, nothing more.

Curators review feedback and corrections, build datasets, start fine-tuning runs and read
evaluations. They do not manage users, delete conversations, or promote models (that is an admin's
call unless an admin adds it).
"""

CURATOR_GROUP = "curator"

CURATOR_PERMISSIONS = [
    ("chat", "view_conversation"),
    ("chat", "view_message"),
    ("chat", "view_feedback"),
    ("chat", "change_feedback"),
    ("curation", "view_dataset"),
    ("curation", "add_dataset"),
    ("curation", "build_dataset"),
    ("registry", "view_modelversion"),
    ("registry", "view_trainingrun"),
    ("registry", "add_trainingrun"),
    ("registry", "view_evaluation"),
]


def sync_curator_group(apps, schema_editor=None) -> None:
    """Create the curator group and give it CURATOR_PERMISSIONS (usable from migrations)."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=CURATOR_GROUP)
    perms = []
    for app_label, codename in CURATOR_PERMISSIONS:
        perm = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if perm is None:
            raise RuntimeError(f"permission {app_label}.{codename} does not exist")
        perms.append(perm)
    group.permissions.set(perms)
