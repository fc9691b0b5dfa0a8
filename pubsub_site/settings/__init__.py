"""Settings for pubsub_site, read from the environment in this package.

DJANGO_ENV chooses the profile:
- ``development`` (the default): DEBUG on, SQLite under var/, the local Redis.
- ``production``: DEBUG off (DEBUG=1 is refused), and SECRET_KEY (not the development
  one), ALLOWED_HOSTS, DATABASE_URL and REDIS_URL must be set, or the process refuses to
  start; ``manage.py load_demo`` refuses to run.

The parts, read in this order: core (the site, its profile and secret, security headers,
logging), stores (the database, Redis, channel layer, cache, rq), access (auth and rate
limits), messaging (sockets' limits, messages, presence), files (static files, media,
attachments), operations (metrics, GC, outbound HTTP, link previews) and notifications
(SITE_URL, e-mail, outgoing webhooks, Web Push).
"""

from __future__ import annotations

# In this order, not isort's: a part imports what it needs from an earlier one, and of two
# wrong settings the first part read reports its own.
# isort: off
from pubsub_site.settings.core import *  # noqa: F403
from pubsub_site.settings.stores import *  # noqa: F403
from pubsub_site.settings.access import *  # noqa: F403
from pubsub_site.settings.messaging import *  # noqa: F403
from pubsub_site.settings.files import *  # noqa: F403
from pubsub_site.settings.operations import *  # noqa: F403
from pubsub_site.settings.notifications import *  # noqa: F403
# isort: on
