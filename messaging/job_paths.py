"""The dotted paths of the background jobs, as rq stores them in Redis.

A queued job is a path string in Redis (``job.func_name``), not a function: a job queued
before a deploy runs after it only if its path still imports. The services enqueue by
these names, so they need not import ``messaging.jobs`` (which imports them back), and
``messaging/tests/test_job_paths.py`` checks that each still names its job. A job that
moves keeps its old path here, re-exported from ``messaging.jobs``.
"""

from __future__ import annotations

PERSIST_MESSAGES = "messaging.jobs.persist_messages"
SEND_MENTION_DIGESTS = "messaging.jobs.send_mention_digests"
FETCH_LINK_PREVIEWS = "messaging.jobs.fetch_link_previews"
# A deleted or hidden message's files leave the storage (attachments.jobs).
WITHDRAW_ATTACHMENTS = "attachments.jobs.withdraw_attachments"

ALL = (PERSIST_MESSAGES, SEND_MENTION_DIGESTS, FETCH_LINK_PREVIEWS, WITHDRAW_ATTACHMENTS)
