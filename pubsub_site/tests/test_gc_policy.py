"""A web process's full garbage collections walk only what is new, and everything once an
interval (pubsub_site.gc_policy).

Each runs in an interpreter of its own: the policy freezes objects for the life of the
process, which the test session must not inherit.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import gc, json, os, time, weakref
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "pubsub_site.settings"
django.setup()
from pubsub_site import gc_policy
gc_policy.install()

class Node:
    pass

def cycles(n):
    nodes = [Node() for _ in range(n)]
    for node in nodes:
        node.me = node  # each one a reference cycle: only the cyclic collector frees it
    return nodes

def full_collections():
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value("pubsub_gc_full_collection_seconds_count") or 0
"""


def run(script: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SETUP + textwrap.dedent(script)],
        cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_what_survives_a_full_collection_is_not_walked_again_until_the_full_walk():
    out = run(
        """
        live = cycles(20_000)
        probe = weakref.ref(live[0])
        frozen_before = gc.get_freeze_count()
        gc.collect()
        print(gc.get_freeze_count() - frozen_before >= 20_000)  # the survivors are frozen
        del live
        gc.collect()
        print(probe() is not None)  # garbage now, but frozen: the collections do not see it
        took, freed = gc_policy.walk_everything()
        print(probe() is None, freed >= 20_000)  # the full walk frees it
        print(full_collections() >= 3)
        """,
        GC_FULL_WALK_SECONDS="3600",
    )
    assert out == ["True", "True", "True", "True", "True"]


def test_the_full_walk_comes_by_itself_within_the_interval():
    out = run(
        """
        live = cycles(1_000)
        probe = weakref.ref(live[0])
        gc.collect()
        del live
        gc.collect()
        print(probe() is not None)
        deadline = time.monotonic() + 10
        while probe() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        print(probe() is None)
        """,
        GC_FULL_WALK_SECONDS="2",
    )
    assert out == ["True", "True"]


def test_with_no_interval_the_collector_keeps_pythons_rule():
    out = run(
        """
        live = cycles(1_000)
        probe = weakref.ref(live[0])
        frozen_before = gc.get_freeze_count()
        gc.collect()
        print(gc.get_freeze_count() == frozen_before)
        del live
        gc.collect()
        print(probe() is None, full_collections() >= 2)
        """,
        GC_FULL_WALK_SECONDS="0",
    )
    assert out == ["True", "True", "True"]


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
