"""Write the emoji picker's data (static/data/emoji.json) from the pinned ``emoji`` package.

The picker (static/js/room-reactions.js) offers exactly what the server accepts
(messaging.reactions.emoji_or_refuse): Unicode's fully-qualified emoji, with their names and
aliases to search by. Skin-tone variants are left out of the list (the server accepts them,
typed or pasted), which keeps the file near 70 kB for a picker loaded only when opened.
The file is committed; run this after upgrading ``emoji`` (a test holds the two equal).
"""

from __future__ import annotations

from pathlib import Path

import emoji
import orjson
from django.conf import settings
from django.core.management.base import BaseCommand

OUTPUT = Path(settings.BASE_DIR) / "static" / "data" / "emoji.json"
SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
# Newer than this, fonts of most systems (Debian's, older phones) show a box.
MAX_EMOJI_VERSION = 14


def _words(name: str) -> str:
    return name.strip(":").replace("_", " ")


def emoji_entries() -> list[list[str]]:
    """[emoji, name, aliases] of each emoji the picker offers, in the package's order."""
    entries = []
    for char, data in emoji.EMOJI_DATA.items():
        if data["status"] != emoji.STATUS["fully_qualified"] or data["E"] > MAX_EMOJI_VERSION:
            continue
        if SKIN_TONES & set(char):
            continue
        aliases = " ".join(_words(alias) for alias in data.get("alias", []))
        entries.append([char, _words(data["en"]), aliases])
    return entries


def emoji_json() -> bytes:
    return orjson.dumps(emoji_entries()) + b"\n"


class Command(BaseCommand):
    help = "Write static/data/emoji.json, the emoji picker's list, from the emoji package."

    def handle(self, *args, **options) -> None:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_bytes(emoji_json())
        self.stdout.write(f"{len(emoji_entries())} emoji written to {OUTPUT}")
