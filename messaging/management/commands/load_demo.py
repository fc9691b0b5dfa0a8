"""Load a few users, rooms and messages so a new site looks alive."""

import uuid

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from messaging.selectors import room_counters
from messaging.services import message_send
from rooms.models import Membership, Room
from rooms.services import direct_open, room_create

DEMO_PASSWORD = "demo-password-123"  # noqa: S105 (printed for the newcomer; development data only)

CONVERSATION = [
    ("alice", "Welcome to pubsub! This room is public: anyone can join."),
    ("bob", "Hi alice 👋 the messages arrive live, no reload needed."),
    ("carol", "Try opening this room in a second browser as bob."),
    ("alice", "Clap a message you like, reply to one, or *format* a _few_ words; links like https://example.com work."),
    ("bob", "Type @carol to mention her: she gets a notification. Her name in the member list opens a direct message."),
]


class Command(BaseCommand):
    help = "Create demo users (alice, bob, carol), two rooms, a short conversation and a direct message."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            # It creates a superuser `admin` whose password is printed in the README.
            raise CommandError("load_demo refuses to run with DJANGO_ENV=production: its users' passwords are public.")
        User = get_user_model()
        users = {}
        for name in ("alice", "bob", "carol"):
            user, created = User.objects.get_or_create(username=name)
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            users[name] = user
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "", DEMO_PASSWORD)

        lobby = Room.objects.filter(slug="lobby").first() or room_create(
            creator=users["alice"], name="Lobby", topic="Say hello", visibility=Room.Visibility.PUBLIC
        )
        team = Room.objects.filter(name="Team", created_by=users["alice"]).first() or room_create(
            creator=users["alice"], name="Team", topic="Private to the team", visibility=Room.Visibility.PRIVATE
        )
        for room in (lobby, team):
            for name in ("bob", "carol"):
                Membership.objects.get_or_create(room=room, user=users[name])

        if room_counters(room_id=lobby.pk)[0] == 0:
            for author, body in CONVERSATION:
                async_to_sync(message_send)(
                    room_id=lobby.pk,
                    room_slug=lobby.slug,
                    author_id=users[author].pk,
                    author_username=author,
                    body=body,
                    client_id=str(uuid.uuid4()),
                )
        direct = direct_open(opener=users["bob"], usernames=["alice"])
        if room_counters(room_id=direct.pk)[0] == 0:
            async_to_sync(message_send)(
                room_id=direct.pk,
                room_slug=direct.slug,
                author_id=users["bob"].pk,
                author_username="bob",
                body="Psst, alice: lunch after the stand-up?",
                client_id=str(uuid.uuid4()),
            )
        self.stdout.write(
            self.style.SUCCESS(f"Demo data loaded: log in as alice, bob, carol or admin with password {DEMO_PASSWORD}")
        )
