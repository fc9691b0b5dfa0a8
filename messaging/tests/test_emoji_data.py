"""The emoji picker's list (static/data/emoji.json) is what `manage.py emoji_data` writes from
the pinned emoji package, and everything it offers is accepted by the server."""

from messaging.management.commands.emoji_data import OUTPUT, emoji_entries, emoji_json
from messaging.reactions import emoji_or_refuse


def test_the_committed_emoji_list_is_the_one_the_command_writes():
    assert OUTPUT.read_bytes() == emoji_json(), "run `manage.py emoji_data` after upgrading the emoji package"


def test_every_emoji_the_picker_offers_is_accepted_and_has_a_name_to_search_by():
    entries = emoji_entries()
    assert len(entries) > 1500
    for emoji, name, _aliases in entries:
        assert emoji_or_refuse(emoji) == emoji
        assert name
    names = {name for _, name, _ in entries}
    assert {"thumbs up", "party popper", "red heart"} <= names
