"""A web process's collector makes no full collection of its own, and one every
GC_FULL_WALK_SECONDS (pubsub_site.gc_policy).

Each runs in an interpreter of its own: the policy changes the collector for the life of the
process, which the test session must not inherit.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SETUP = """
import gc, os, time, weakref
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "pubsub_site.settings"
django.setup()
from pubsub_site import gc_policy
gc_policy.install()

class Node:
    pass

def old_garbage():
    # A reference cycle that reaches the oldest generation alive, then becomes garbage: only
    # a full collection frees it.
    node = Node()
    node.me = node
    gc.collect(1)  # survivors of the young generations move to the oldest
    return weakref.ref(node)

def churn():
    # What a busy process does: enough allocations for hundreds of young collections, with
    # survivors, which by Python's rule brings full collections.
    kept = []
    for i in range(300):
        kept.append([[j] for j in range(3_000)])
    return len(kept)

def full_collections():
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value("pubsub_gc_full_collection_seconds_count") or 0
"""


def run(script: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", SETUP + textwrap.dedent(script)],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_old_garbage_waits_for_the_walk_however_busy_the_process():
    out = run(
        """
        probe = old_garbage()
        churn()
        print(probe() is not None, full_collections() == 0)  # no full collection of its own
        gc.collect()  # the walk
        print(probe() is None, full_collections() == 1)
        """,
        GC_FULL_WALK_SECONDS="3600",
    )
    assert out == ["True", "True", "True", "True"]


def test_the_walk_comes_by_itself_within_the_interval():
    out = run(
        """
        probe = old_garbage()
        deadline = time.monotonic() + 10
        while probe() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        print(probe() is None, full_collections() >= 1)
        """,
        GC_FULL_WALK_SECONDS="2",
    )
    assert out == ["True", "True"]


def test_with_no_interval_the_collector_keeps_pythons_rule():
    out = run(
        """
        probe = old_garbage()
        churn()
        print(probe() is None, full_collections() >= 1)
        """,
        GC_FULL_WALK_SECONDS="0",
    )
    assert out == ["True", "True"]


def test_a_negative_interval_is_refused():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "GC_FULL_WALK_SECONDS": "-1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "GC_FULL_WALK_SECONDS=-1" in result.stderr
