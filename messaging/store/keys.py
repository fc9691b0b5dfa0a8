"""The Redis keys of the store, the one place their names are written.

Keys of one room share the hash tag ``{<room_id>}`` and live on the room's server
(``pubsub_site.redis.client.room_redis_url``):

- ``…:seq``        the last sequence number given out (INCR)
- ``…:rev``        the room's revision: rises with every change to its state
- ``…:buf``        sorted set, score ``seq``, member the message record (JSON); holds
                   every message PostgreSQL does not have yet, plus the last
                   ``MESSAGE_BUFFER_KEEP`` persisted ones for fast replay, none of them
                   persisted more than ``MESSAGE_HOT_SECONDS`` ago (a buffer with nothing
                   to persist expires)
- ``…:persisted``  every message with ``seq`` up to this is in PostgreSQL
- ``…:cid:<author>:<uuid>`` the ``seq`` the author's ``client_id`` got, for retries
                   (expires: a UUIDv7's ``MESSAGE_HOT_SECONDS`` after its message is
                   persisted, PostgreSQL answering later retries; another UUID's after
                   ``MESSAGE_DEDUP_TTL``). Per author: another user's ``client_id`` is never theirs.
                   (``…:cid:<uuid>``, without the author, is the form written before; still
                   read, for the author whose message the buffer shows, until it expires.)
- ``…:details``    the revision of the room's details (name, topic, archive state, members):
                   rises with every change its subscribers are told of (protocol.details)
- ``…:ratelimit:send:<user>`` the times of the user's last messages, for the send limit (expires)
- ``…:slow:<user>`` exists while the user must wait in slow mode (expires)

and per server ``pubsub:dirty`` (rooms with messages to persist) and
``pubsub:persist:scheduled`` (a persistence job is queued or running).

A record is the stored form of a message: ``seq``, ``rev``, ``author``, ``body``,
``client_id``, ``sent_at``. ``protocol.wire`` turns it into frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.details import details_key

DIRTY_KEY = "pubsub:dirty"
SCHEDULED_KEY = "pubsub:persist:scheduled"
# A queued persistence job that died is replaced after this long (milliseconds).
SCHEDULED_TTL_MS = 5000
# Written by the persistence job before it WAITs for replicas (``confirm_replicated``).
CONFIRM_KEY = "pubsub:persist:confirm"


@dataclass(frozen=True)
class RoomKeys:
    room_id: int

    @property
    def prefix(self) -> str:
        return f"pubsub:room:{{{self.room_id}}}"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def rev(self) -> str:
        return f"{self.prefix}:rev"

    @property
    def details(self) -> str:
        return details_key(self.room_id)  # the name is protocol.details's: rooms' code raises it

    @property
    def buf(self) -> str:
        return f"{self.prefix}:buf"

    @property
    def persisted(self) -> str:
        return f"{self.prefix}:persisted"

    def client_id(self, client_id: str, author_id: int) -> str:
        return f"{self.prefix}:cid:{author_id}:{client_id}"

    def legacy_client_id(self, client_id: str) -> str:
        """The dedupe key as it was written before it named the author (expires within
        MESSAGE_DEDUP_TTL of the upgrade; then nothing has it any more)."""
        return f"{self.prefix}:cid:{client_id}"

    def send_limit_of(self, user_id: int) -> str:
        return f"{self.prefix}:ratelimit:send:{user_id}"  # times of the user's last messages, newest first

    def slow_mode_of(self, user_id: int) -> str:
        return f"{self.prefix}:slow:{user_id}"  # exists while the user must wait (slow mode)

    # State that changes after a message is sent (see messaging.store.changes).
    @property
    def edits(self) -> str:
        return f"{self.prefix}:edits"  # seq -> {"body", "at", "rev"}

    @property
    def deletions(self) -> str:
        return f"{self.prefix}:deleted"  # seq -> {"at", "by", "hidden", "rev"}

    @property
    def clap_totals(self) -> str:
        return f"{self.prefix}:clapt"  # seq -> total

    @property
    def clap_revs(self) -> str:
        return f"{self.prefix}:claprev"  # seq -> rev of the last clap

    def claps_of(self, seq: int) -> str:
        return f"{self.prefix}:claps:{seq}"  # user id -> count

    @property
    def claps_given(self) -> str:
        return f"{self.prefix}:given"  # user id -> claps given in the room

    @property
    def claps_received(self) -> str:
        return f"{self.prefix}:received"  # user id -> claps received in the room

    @property
    def top(self) -> str:
        return f"{self.prefix}:top"  # sorted set: seq scored by total claps

    @property
    def reactions(self) -> str:
        # seq -> {"rev", "r": [[emoji, [[user id, username], …]], …]} (messaging.store.reactions)
        return f"{self.prefix}:reactions"

    @property
    def pins(self) -> str:
        return f"{self.prefix}:pins"  # seq -> {"pinned", "by", "at", "rev"} (messaging.store.pins)

    @property
    def changes(self) -> str:
        return f"{self.prefix}:changes"  # sorted set: seq scored by the rev of its last change

    @property
    def changes_persisted(self) -> str:
        return f"{self.prefix}:changes_persisted"  # every change up to this rev is in PostgreSQL

    @property
    def threads(self) -> str:
        return f"{self.prefix}:threads"  # root seq -> its thread's summary (messaging.store.threads)

    @property
    def threads_floor(self) -> str:
        # Roots up to this seq may have lost their summary with Redis's data (set when the room's
        # counters are taken from PostgreSQL): theirs is then read from PostgreSQL.
        return f"{self.prefix}:threads_floor"

    @property
    def reads(self) -> str:
        return f"{self.prefix}:reads"  # user id -> last read seq

    @property
    def reads_dirty(self) -> str:
        return f"{self.prefix}:reads_dirty"  # user ids whose marker PostgreSQL lacks

    @property
    def presence(self) -> str:
        # sorted set: "user_id|username|kind|channel" scored by expiry time
        return f"{self.prefix}:presence"

    @property
    def presence_users(self) -> str:
        return f"{self.prefix}:presence_users"  # hash: user id -> how many entries `presence` holds

    @property
    def presence_news(self) -> str:
        return f"{self.prefix}:presence_news"  # hash: user id -> the user (JSON) who came or went, not yet told

    @property
    def presence_told(self) -> str:
        return f"{self.prefix}:presence_told"  # exists for PRESENCE_COALESCE_SECONDS after the room was told
