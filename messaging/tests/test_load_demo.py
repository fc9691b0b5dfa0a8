"""`make demo`'s conversation (load_demo) shows the site as it is: it promises nothing that
already exists (issue 21), and loading it twice changes nothing."""

import io
import re

import pytest
from django.core.management import call_command

from messaging.management.commands.load_demo import CONVERSATION
from messaging.selectors import message_history
from rooms.models import Room

pytestmark = pytest.mark.django_db(transaction=True)

PROMISES = re.compile(r"come(s)? next|coming soon|for now|not yet|plain text", re.IGNORECASE)


def test_the_demo_conversation_promises_nothing():
    assert [body for _, body in CONVERSATION if PROMISES.search(body)] == []


def test_it_loads_the_conversation_once():
    call_command("load_demo", stdout=io.StringIO())
    call_command("load_demo", stdout=io.StringIO())
    lobby = Room.objects.get(slug="lobby")
    bodies = [m["body"] for m in message_history(room=lobby, around=None, limit=50).messages]
    assert bodies == [body for _, body in CONVERSATION]
