"""rooms 0005 names the direct conversations that had random addresses, and keeps each old
address as an alias (the room page redirects from it); backwards, the old ones come back.
On whichever database the suite runs (PostgreSQL, or SQLite in its SQLite leg)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("rooms", "0004_direct_messages")]
AFTER = [("rooms", "0005_room_settings_and_direct_slugs")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_it_names_old_conversations_and_keeps_their_addresses(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password="x")
    bob = django_user_model.objects.create_user(username="bob", password="x")
    try:
        apps = migrate(BEFORE)
        Room = apps.get_model("rooms", "Room")
        Membership = apps.get_model("rooms", "Membership")
        dm = Room.objects.create(
            kind="direct",
            dm_key=f"{alice.pk},{bob.pk}",
            visibility="private",
            name="alice, bob",
            slug="Zr4nd0m-0ld_slug",
            created_by_id=alice.pk,
        )
        for user in (alice, bob):
            Membership.objects.create(room=dm, user_id=user.pk)
        Room.objects.create(name="Lobby", slug="lobby", created_by_id=alice.pk)

        apps = migrate(AFTER)
        Room = apps.get_model("rooms", "Room")
        RoomSlugAlias = apps.get_model("rooms", "RoomSlugAlias")
        named = Room.objects.get(pk=dm.pk)
        assert named.slug.startswith("alice-bob-") and not named.archived
        assert list(RoomSlugAlias.objects.values_list("slug", "room_id")) == [("Zr4nd0m-0ld_slug", dm.pk)]
        assert Room.objects.get(name="Lobby").slug == "lobby"

        apps = migrate(BEFORE)
        assert apps.get_model("rooms", "Room").objects.get(pk=dm.pk).slug == "Zr4nd0m-0ld_slug"
    finally:
        executor = MigrationExecutor(connection)
        migrate(executor.loader.graph.leaf_nodes())  # every app's latest, as the other tests expect
