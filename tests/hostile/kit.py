"""What the hostile-input suites share: the Hypothesis profiles, a live web process whose
log is read as it grows, and /metrics read from it.

Profiles (``FUZZ_PROFILE``, default ``ci``): ``ci`` is what `make test` runs, a bounded
number of examples per kind of frame and per URL pattern (both fuzzers in about 75 s on a
shared 2-core machine); ``fuzz`` is `make fuzz`, 20 times as many (about 5.5 minutes).
Neither shrinks: each frame and each request is judged on its own, and a failure names the
one that failed (a shrink would replay real requests against a live process for minutes).
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from prometheus_client.parser import text_string_to_metric_families

from pubsub_site.cluster import Cluster

_common = {
    "deadline": None,
    "database": None,
    "phases": (Phase.explicit, Phase.reuse, Phase.generate),
    "suppress_health_check": list(HealthCheck),
    "print_blob": True,
}
# max_examples: per kind of client frame (socket), per URL pattern (HTTP; a quarter for the admin's).
settings.register_profile("ci", max_examples=12, **_common)
settings.register_profile("fuzz", max_examples=250, **_common)
PROFILE = os.environ.get("FUZZ_PROFILE", "ci")


def fuzz_settings(scale: float = 1.0) -> settings:
    """The active profile, with ``scale`` times its examples."""
    profile = settings.get_profile(PROFILE)
    return settings(profile, max_examples=max(1, round(profile.max_examples * scale)))


class WebLog:
    """The live web process's output (stdout and stderr), read as it grows."""

    def __init__(self, cluster: Cluster, port: int):
        self.path: Path = cluster.log_dir / f"web-{port}.log"
        self.offset = 0

    def new(self) -> str:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read()
        self.offset += len(text)
        return text.decode(errors="replace")

    def everything(self) -> str:
        return self.path.read_text(errors="replace")


# A log record's first line: Django's format (pubsub_site.settings.core.LOGGING) or uvicorn's.
RECORD = re.compile(r"^(?:\d{4}-\d\d-\d\d [\d:,]+ (?P<level>[A-Z]+) (?P<logger>\S+)|(?P<uvicorn>[A-Z]+):\s)")
# The last line of a traceback: the exception, at the start of a line.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:: .*)?$")  # (module.)Class[: message]


def unhandled(text: str) -> str | None:
    """What in ``text`` says an exception went unhandled: a record at ERROR or above (Django
    logs a 500 so, uvicorn an exception out of the application), or a traceback with no
    record (printed by the interpreter). A traceback under a WARNING record is a handled
    refusal (Django logs a 403 with its PermissionDenied), and so is one under
    ``django.security.*`` (a SuspiciousOperation, answered 400: Django logs those at ERROR
    by design, e.g. a redirect to the log-in page past 16,384 characters). None when there is none; else the
    exceptions that ended the tracebacks, and the first lines."""
    lines = text.splitlines()
    level: str | None = None
    first: int | None = None
    ends: set[str] = set()
    for n, line in enumerate(lines):
        if record := RECORD.match(line):
            level = record.group("level") or record.group("uvicorn")
            if (record.group("logger") or "").startswith("django.security."):
                level = "WARNING"  # a suspicious request Django refused with a 400 (it logs those at ERROR)
            if level in ("ERROR", "CRITICAL") and first is None:
                first = n
        elif line.startswith("Traceback") and level not in ("WARNING", "INFO", "DEBUG") and first is None:
            first = n
        elif EXCEPTION_LINE.match(line):
            if first is not None:
                ends.add(line[:200])  # (a chained traceback's goes on under the same record)
        elif line and not line[0].isspace() and not line.startswith(("Traceback", "The above", "During handling")):
            level = None  # output that is no record's (a warning printed by Python, say)
    if first is None:
        return None
    excerpt = "\n".join(lines[max(0, first - 2) : first + 12])
    return f"exceptions: {sorted(ends)}\n{excerpt}"


def describe(failure: BaseException) -> str:
    """The failure, and those it groups (Hypothesis raises a group for an example that failed
    once and then passed: the parts say why it failed)."""
    text = str(failure)
    if isinstance(failure, BaseExceptionGroup):
        text += "".join(f"\n  - {describe(part)}" for part in failure.exceptions)
    return text


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """One /metrics scrape of the live process: (sample name, sorted labels) -> value."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own server)
        text = response.read().decode()
    values: dict[tuple[str, tuple], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return values


def metric(values: dict[tuple[str, tuple], float], name: str) -> float:
    return sum(v for (n, _), v in values.items() if n == name)
