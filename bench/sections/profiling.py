"""``profile``: py-spy on the web process while 10 rooms x 20 members take a steady delivered rate:
where its time goes, by library and by function (``bench.profile`` summarises the samples).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.meters import wait_idle
from bench.shape import new_shape, step_line


def section_profile(plan, config, cluster, pool, population) -> dict:
    """py-spy on the (first) web process while 10 rooms x 20 members take ``profile_rate`` delivered/s."""
    from bench.profile import pyspy_path, summarise

    spy = pyspy_path()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    rooms, members = plan.latency_shape
    shape = new_shape(plan, pool, population, cluster, rooms, members, f"prof {config.key}", cluster.ports[:1])
    shape.connect()
    out = Path(tempfile.mkdtemp(prefix="pubsub-bench-prof-")) / "web.raw"
    pid = cluster.ports and cluster.webs[cluster.ports[0]].pid
    try:
        wait_idle([pid])
        seconds = plan.profile_seconds
        spy_proc = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)), "--rate", "100",
             "--format", "raw", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(0.5)
        step = shape.step(plan.profile_rate, duration=seconds)
        _, err = spy_proc.communicate(timeout=60)
    finally:
        shape.close()
    if not out.exists():
        return {"skipped": f"py-spy produced nothing: {err.decode(errors='replace')[-300:]}"}
    summary = summarise(out.read_text())
    summary["delivery"] = step
    summary["raw_file"] = str(out)
    plan.log(f"    profiled {summary['samples']} samples under load ({step_line(step)})")
    return summary
