"""Running the site: metrics, the garbage collector, and fetches of other sites.

Who may read /metrics (METRICS_ALLOWED_NETS, METRICS_TOKEN), the worker's metrics port and
the sampling interval, GC_FULL_WALK_SECONDS (pubsub_site.gc_policy), the networks outbound
HTTP may reach although they are not public (pubsub_site.outbound) and the link previews'
limits, from the environment.
"""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ImproperlyConfigured

from pubsub_site.env import env_bool, env_float, env_int, env_list, env_str

# --- Metrics (Prometheus, /metrics; docs/deploy.md "Metrics") -----------------

# /metrics answers clients in these networks (CIDR, comma-separated; the address uvicorn
# gives, which behind nginx is the real client's) or presenting `Authorization: Bearer
# METRICS_TOKEN`; anyone else gets a 404.
METRICS_ALLOWED_NETS = env_list("METRICS_ALLOWED_NETS", ["127.0.0.1/32", "::1/128"])
for _net in METRICS_ALLOWED_NETS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETS: {_net!r} is not a network; write e.g. 10.0.0.0/8.") from None
# Empty: no token is accepted. A token is a password: at least 16 characters.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (or empty: no token).")
# The worker serves its own /metrics on this port when no PROMETHEUS_MULTIPROC_DIR is
# shared with the web processes (Docker); 0: it does not (jobs_worker --metrics-port).
METRICS_WORKER_PORT = env_int("METRICS_WORKER_PORT", 0)
# How often each web process samples its sockets' outbox backlog and its event loop's lag.
METRICS_SAMPLE_SECONDS = env_float("METRICS_SAMPLE_SECONDS", 5.0)
# A web process's garbage collector makes no full collection of its own, but one this often
# (seconds), freeing the cycles that grew old before they became garbage
# (pubsub_site.gc_policy). 0: Python's own rule.
GC_FULL_WALK_SECONDS = env_int("GC_FULL_WALK_SECONDS", 1800)
if GC_FULL_WALK_SECONDS < 0:
    raise ImproperlyConfigured(f"GC_FULL_WALK_SECONDS={GC_FULL_WALK_SECONDS}: 0 (off) or more seconds.")

# --- Outbound HTTP (link previews, webhooks: pubsub_site.outbound) ------------

# Networks (CIDR, comma-separated) the site may fetch from although they are not public
# (private, loopback...). Empty by default: only public addresses. Tests allow 127.0.0.1/32.
OUTBOUND_ALLOWED_NETWORKS = env_list("OUTBOUND_ALLOWED_NETWORKS", [])
for _net in OUTBOUND_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"OUTBOUND_ALLOWED_NETWORKS: {_net!r} is not a network; write e.g. 10.0.0.0/8."
        ) from None

# Link previews (messaging.previews): a card for the first link of a message, fetched by a job
# through pubsub_site.outbound and kept per URL this long (seconds) before it is fetched again.
LINK_PREVIEWS = env_bool("LINK_PREVIEWS", True)
LINK_PREVIEW_TTL = env_int("LINK_PREVIEW_TTL", 24 * 3600)
LINK_PREVIEW_TIMEOUT = env_float("LINK_PREVIEW_TIMEOUT", 5.0)
LINK_PREVIEW_MAX_BYTES = env_int("LINK_PREVIEW_MAX_BYTES", 1_000_000)
LINK_PREVIEW_IMAGE_MAX_BYTES = env_int("LINK_PREVIEW_IMAGE_MAX_BYTES", 2_000_000)
