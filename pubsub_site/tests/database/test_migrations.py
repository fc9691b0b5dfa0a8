"""Migrations that a rolling deploy survives (docs/deploy.md, "Upgrades"): the migrations run
while the previous release still serves, and that release inserts rows without the columns
it does not know of. A column added to an existing table must therefore fill itself in: it
is nullable or has a default in the database (``db_default``), not only in Python."""

from __future__ import annotations

from pathlib import Path

from django.apps import apps
from django.db import migrations
from django.db.migrations.loader import MigrationLoader
from django.db.models import NOT_PROVIDED

ROOT = Path(__file__).resolve().parents[3]


def project_apps() -> set[str]:
    """The apps of this repository (not Django's, not a library's)."""
    return {
        config.label
        for config in apps.get_app_configs()
        if ROOT in Path(config.path).parents and "site-packages" not in Path(config.path).parts
    }


def added_columns() -> list[tuple[str, str, str, str]]:
    """(app, migration, model, field) of every AddField of the project onto a model that an
    earlier migration created."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    mine = project_apps()
    found = []
    for (app, name), migration in sorted(loader.disk_migrations.items()):
        if app not in mine:
            continue
        created_here = {op.name.lower() for op in migration.operations if isinstance(op, migrations.CreateModel)}
        for op in migration.operations:
            if isinstance(op, migrations.AddField) and op.model_name.lower() not in created_here:
                found.append((app, name, op.model_name, op.name))
    return found


def test_the_check_sees_the_columns_added_to_existing_tables():
    columns = {(app, model, field) for app, _, model, field in added_columns()}
    assert {("rooms", "membership", "notify_level"), ("messaging", "message", "also_in_room")} <= columns


def test_a_column_added_to_an_existing_table_is_nullable_or_has_a_database_default():
    missing = []
    for app, migration, model, name in added_columns():
        field = apps.get_model(app, model)._meta.get_field(name)
        if field.many_to_many or field.null or field.db_default is not NOT_PROVIDED:
            continue
        missing.append(f"{app}.{model}.{name} (added in {migration})")
    assert not missing, "give these db_default (or null=True): " + ", ".join(missing)
