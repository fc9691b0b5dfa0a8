"""The messaging: what a socket may do, how messages are kept, and the room's live events.

The WebSocket limits (rates, flood, frames, sockets and subscriptions per user, handshakes,
drain on SIGTERM, the event loop's database connections), the messages' lengths, Redis
buffers, replay limits and persistence job, and presence, typing, claps, reactions, pins and
activity, from the environment where a deployment may change them; rates are in the `limits`
notation (pubsub_site.env.env_rate).
"""

from __future__ import annotations

from pubsub_site.env import env_float, env_int, env_nonnegative_int, env_positive_int, env_rate

# WebSocket rate limits per user and room (messaging/realtime/throttle.py), in the room's
# Redis, so they hold across web processes. "10/2second" is 5 a second on average
# with bursts of 10.
WS_RATE_LIMITS = {
    "send": env_rate("WS_RATE_LIMIT_SEND", "10/2second"),
    "clap": env_rate("WS_RATE_LIMIT_CLAP", "20/2second"),
    "edit": env_rate("WS_RATE_LIMIT_EDIT", "20/minute"),
    "react": env_rate("WS_RATE_LIMIT_REACT", "20/10second"),
    "pin": env_rate("WS_RATE_LIMIT_PIN", "20/minute"),
}
# A connection refused this many times within WS_FLOOD_WINDOW seconds is closed (1008).
WS_FLOOD_REFUSALS = env_int("WS_FLOOD_REFUSALS", 20)
WS_FLOOD_WINDOW = 10
# Subscribe frames one socket may send (counted by the socket itself, moving window); past
# it a subscribe is answered `rate_limited`. A subscribe is the costliest frame (a replay).
WS_SUBSCRIBE_RATE = env_rate("WS_SUBSCRIBE_RATE", "20/10second")
# The largest frame a client may send (bytes); a bigger one closes the socket with 1009. Not
# read from the environment: every web command (Procfile, Dockerfile, the benchmark) passes the
# same number to uvicorn as --ws-max-size, so that it refuses such a frame from its header,
# before buffering it (pubsub_site/tests/deploy/test_web_server_commands.py holds them to it).
WS_FRAME_MAX_BYTES = 64 * 1024
# Open sockets one user may have in one web process (a tab is one); the next one is closed
# with 1008 after an `error` frame `too_many_sockets`. 0: no cap. (The benchmark and the
# reconnect storm test hold 50 tabs per user in one process.)
WS_MAX_SOCKETS_PER_USER = env_nonnegative_int("WS_MAX_SOCKETS_PER_USER", 100)
# Rooms one socket may follow at once; a subscribe past it is answered `too_many_subscriptions`.
WS_MAX_SUBSCRIPTIONS = env_positive_int("WS_MAX_SUBSCRIPTIONS", 100)

# --- Messaging -------------------------------------------------------------

MESSAGE_MAX_LENGTH = 4000
# Redis keeps a persisted message this long (seconds) at most: in the room's replay buffer (from
# when it was sent) and, for a UUIDv7 client_id, its dedupe key (from when it was persisted).
# Older replays read PostgreSQL, and a later retry is answered from its unique key (room, author,
# client_id): Redis's memory follows the send rate, not the history (docs/deploy.md, Redis memory).
MESSAGE_HOT_SECONDS = env_int("MESSAGE_HOT_SECONDS", 600)
# A dedupe key of another UUID (not a v7: its age is unknown) lives this long (seconds), as does
# any whose message is never persisted (its room deleted first).
MESSAGE_DEDUP_TTL = env_int("MESSAGE_DEDUP_TTL", 7 * 24 * 3600)
# How many persisted messages each room keeps in its Redis buffer for fast replay, at most
# (and none older than MESSAGE_HOT_SECONDS).
MESSAGE_BUFFER_KEEP = env_int("MESSAGE_BUFFER_KEEP", 1000)
# Past this many missed messages, subscribe answers recovered: false.
MESSAGE_REPLAY_LIMIT = 1000
# Past this many revisions between a subscribe's `rev` and the room's (messages and changes
# alike), subscribe answers recovered: false and replays nothing: the changes a client missed
# are read by revision, so what a subscribe reads is bounded by this, not by the room's history.
CHANGE_REPLAY_LIMIT = env_int("CHANGE_REPLAY_LIMIT", 2000)
# Each worker queues a persistence job this often (seconds) when rooms wait and none is
# scheduled: after a job failed (PostgreSQL down) or was lost (Redis restarted).
PERSIST_SWEEP_SECONDS = env_int("PERSIST_SWEEP_SECONDS", 10)
# While sends keep coming, the persistence job waits this long between rounds, so a round
# carries a batch (the ack-to-row lag grows by as much; its target is p99 < 1 s).
PERSIST_LINGER_SECONDS = env_float("PERSIST_LINGER_SECONDS", 0.1)
# A client that stops reading: once this much waits for it beyond what the server and the
# kernel buffer for its socket, its connection is closed (bytes; see messaging.realtime.sockets.Outbox).
WS_SEND_BACKLOG_MAX_BYTES = env_int("WS_SEND_BACKLOG_MAX_BYTES", 2 * 1024 * 1024)
# WebSocket handshakes at work at once per web process; more wait their turn for up to
# WS_HANDSHAKE_WAIT seconds, then are closed with 1013 and the clients retry with backoff
# (see pubsub_site.asgi.HandshakeLimit). A wait costs nothing; a 1013 costs a handshake and
# a retry: in the benchmark's 2,000-client storm a 2 s wait made 2,800 of them. uvicorn
# keeps a waiting handshake open as long as it takes (daphne drops it after 5 s: under
# daphne, keep this under 5). 0: no limit.
WS_HANDSHAKE_LIMIT = env_int("WS_HANDSHAKE_LIMIT", 10)
WS_HANDSHAKE_WAIT = env_float("WS_HANDSHAKE_WAIT", 10.0)
# On SIGTERM a web process closes its sockets (1012, after a `reconnect` frame) spread evenly
# over WS_DRAIN_SECONDS, each after the frame it is handling, and only then lets uvicorn shut
# down (messaging.realtime.drain). Each `reconnect` frame asks the client to wait a random
# 0..WS_RECONNECT_JITTER_MS ms. Keep WS_DRAIN_SECONDS + WS_DRAIN_LINGER_SECONDS + uvicorn's
# --timeout-graceful-shutdown (+ 2 s of close grace) under the time the supervisor waits
# before SIGKILL (compose's stop_grace_period).
WS_DRAIN_SECONDS = env_float("WS_DRAIN_SECONDS", 5.0)
# Once drained, the process stays alive this long, its listener still closed, before uvicorn
# shuts down. Why: a proxy that still has the process's address (nginx re-resolves `web`
# every 5 s, deploy/nginx.conf) gets its connect refused at once by the kernel and tries the
# next replica; once the process (and its container's address) is gone, the same connect
# goes unanswered until proxy_connect_timeout (1 s), then 502. docker-compose.yml sets it
# above nginx's resolver validity; 0 (a proxy that needs no such wait, make cluster): none.
WS_DRAIN_LINGER_SECONDS = env_float("WS_DRAIN_LINGER_SECONDS", 0.0)
WS_RECONNECT_JITTER_MS = env_int("WS_RECONNECT_JITTER_MS", 500)
# PostgreSQL connections per web process for the reads of handshakes and subscribes, made
# on the event loop (pubsub_site.async_db), besides the pool of DB_POOL_MAX_SIZE.
WS_DB_CONNECTIONS = env_positive_int("WS_DB_CONNECTIONS", 4)

# Presence: a connection refreshes its entry every PRESENCE_HEARTBEAT seconds; a
# process that dies without saying goodbye has its users leave within
# PRESENCE_TTL + PRESENCE_HEARTBEAT seconds (45 + 15 = 60).
PRESENCE_TTL = env_int("PRESENCE_TTL", 45)
PRESENCE_HEARTBEAT = env_int("PRESENCE_HEARTBEAT", 15)
# Who came and went is broadcast at most this often per room, over every web process (seconds),
# and a presence frame names at most PRESENCE_LIST_MAX people (with the count of all).
PRESENCE_COALESCE_SECONDS = env_float("PRESENCE_COALESCE_SECONDS", 1.0)
PRESENCE_LIST_MAX = env_int("PRESENCE_LIST_MAX", 100)
# One `typing` event per user and room at most this often (seconds).
TYPING_INTERVAL = 2.0
# Claps on one message are broadcast at most this often per web process (seconds).
CLAP_COALESCE_SECONDS = 0.1
# Emoji reactions (messaging.reactions): distinct emoji on one message, emoji one user puts
# on one message, and the reactors a `reactions` frame names per emoji (its count is of all).
REACTIONS_MAX_EMOJI_PER_MESSAGE = env_positive_int("REACTIONS_MAX_EMOJI_PER_MESSAGE", 20)
REACTIONS_MAX_PER_USER_PER_MESSAGE = env_positive_int("REACTIONS_MAX_PER_USER_PER_MESSAGE", 10)
REACTIONS_USERS_LISTED = env_positive_int("REACTIONS_USERS_LISTED", 50)
# Pinned messages a room holds at most (messaging.pins).
PINS_MAX_PER_ROOM = env_positive_int("PINS_MAX_PER_ROOM", 50)
# New-message activity (unread counts) is broadcast at most this often per room and process.
ACTIVITY_COALESCE_SECONDS = 1.0
