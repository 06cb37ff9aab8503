"""The permissions the `curator` group holds: exactly what curation work needs, nothing more.

Curators review flagged replies and corrections, generate and review adversarial samples, build
datasets, start fine-tuning runs and read evaluations. They see conversation content only through
the curation views (consented conversations only, every access written to the audit log), not
through the chat admin. They do not manage users, delete conversations, read the audit log, or
promote models (that is an admin's call unless an admin adds it).
"""

CURATOR_GROUP = "curator"

CURATOR_PERMISSIONS = [
    ("curation", "view_flaggedturn"),
    ("curation", "view_adversarialsample"),
    ("curation", "change_adversarialsample"),
    ("curation", "review_adversarialsample"),
    ("curation", "generate_adversarialsample"),
    ("curation", "view_curationjob"),
    ("curation", "view_dataset"),
    ("curation", "add_dataset"),
    ("curation", "build_dataset"),
    ("curation", "view_loopsettings"),
    ("curation", "view_reviewpolicy"),
    ("registry", "view_modelversion"),
    ("registry", "view_trainingrun"),
    ("registry", "add_trainingrun"),
    ("registry", "view_evaluation"),
    ("registry", "view_promotionpolicy"),
    ("registry", "view_promotionrecord"),
]


def sync_curator_group_so_far(apps, schema_editor=None) -> None:
    """sync_curator_group for older migrations: permissions of models that a later migration
    creates are left for that migration's own sync."""
    sync_curator_group(apps, schema_editor, strict=False)


def sync_curator_group(apps, schema_editor=None, strict: bool = True) -> None:
    """Create the curator group and give it CURATOR_PERMISSIONS (usable from migrations).

    Args:
        apps: the (historical) app registry.
        schema_editor: unused (RunPython's signature).
        strict: a missing permission is an error (else it is skipped).
    """
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
        if perm is None and not strict:
            continue
        if perm is None:
            raise RuntimeError(f"permission {app_label}.{codename} does not exist")
        perms.append(perm)
    group.permissions.set(perms)
