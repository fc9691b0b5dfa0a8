"""The site's project package. Importing it (every process does, for its settings) readies
the directory the processes of this host share their Prometheus metrics in, before any
module makes a metric (messaging.metrics; django-rq makes one on import too)."""

import os


def _prepare_metrics_dir() -> None:
    """With PROMETHEUS_MULTIPROC_DIR set: make the directory if need be, and drop the live
    gauges (open connections and the like) that a dead process with this process's pid left
    there, which this process's own values would otherwise start from. Its counters stay:
    they are part of the host's totals."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    from prometheus_client.multiprocess import mark_process_dead  # noqa: PLC0415 (prometheus_client only once the directory exists: it reads it when imported)

    mark_process_dead(os.getpid(), path)


_prepare_metrics_dir()
