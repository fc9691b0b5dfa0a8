"""The orchestrator: starts the servers it measures, drives the client processes, computes figures.

Sections (``--only``), each on freshly started servers (one web process unless the
configuration says otherwise, and one rq worker: persistence on):

- ``latency``      10 rooms x 20 members, delivered rate stepped up (1,000 ... 80,000/s):
                   p50/p99/max, lost/dup/out of order, web CPU per delivered copy; the
                   shape's capacity is the highest step with p99 < 100 ms and nothing lost
- ``fanout``       1 room x 1,000 members, stepped up the same way
- ``spectators``   the same room with 5,000 more connections held (spectators: subscribed,
                   never sending), stepped up: no one cut off, nothing lost
- ``handshake``    1,000 clients connect and subscribe, all at once, trying again after a
                   1013 close as the browser does: first cold (none of them a member of its
                   public room yet: each first subscribe joins it, a write), then warm (the
                   same clients again, members now): time to all in, per second per web
                   process, retries, and cold over warm
- ``storm``        2,000 subscribed clients lose their connections at once and all come
                   back (browser backoff, resubscribe with ``since``): time until all are
                   back, retries; then a short step checks that every one of them receives
- ``persistence``  1,500 messages a second: time from ack to the row in PostgreSQL
- ``memory``       RSS growth of a fresh web process over 5,000 idle subscribed connections
- ``profile``      py-spy on the web process during a 10 x 20 step: where the time goes

The sections are in ``bench.sections`` (``api`` in ``bench.http_api``); what they share is the
plan and the servers measured (``bench.plan``), the servers started for a section
(``bench.servers``), the client processes (``bench.clients``), a shape of rooms under load and
its ladder (``bench.shape``) and what is read off the machine (``bench.meters``);
``bench.summary`` and ``bench.report`` turn the run into its JSON and its report.
"""

from __future__ import annotations

import time

from bench import fixtures
from bench.clients import ClientPool
from bench.loadgen import raise_open_files_limit
from bench.meters import wait_for_quiet_machine
from bench.plan import Plan
from bench.sections import SECTIONS
from bench.servers import start_servers


def run(plan: Plan) -> dict:
    raise_open_files_limit()
    plan.log(f"database {fixtures.database_name(plan.database_url)} (recreated), redis {plan.redis_url} (flushed)")
    fixtures.recreate_database(plan.database_url)
    fixtures.setup_django(plan.database_url, plan.redis_url)
    import redis

    client = redis.Redis.from_url(plan.redis_url)
    client.flushdb()
    if client.connection_pool.connection_kwargs.get("host") in ("127.0.0.1", "localhost"):
        plan.redis_pid = int(client.info("server")["process_id"])
    population = fixtures.Population()
    results: dict = {"configs": {}}
    started = time.monotonic()
    with ClientPool(plan.clients) as pool:
        for config, sections in plan.configs:
            plan.log(f"== {config.label}: {', '.join(sections)}")
            config_results: dict = {
                "label": config.label,
                **config.__dict__,
                "reference": config.is_reference,
                "web_command": config.web_command,
            }
            for section in sections:
                # "memory@1000": a section with an argument (here: how many idle connections)
                name, _, arg = section.partition("@")
                extra = {"connections": int(arg)} if arg else {}
                section_started = time.monotonic()
                # memory wants a fresh web process, without the earlier sections' garbage
                quiet = wait_for_quiet_machine(plan.quiet_wait, plan.log)
                cluster = start_servers(plan, config, worker=name != "memory")
                try:
                    plan.log(f"  {name} (web on ports {', '.join(map(str, cluster.ports))})")
                    config_results[name] = SECTIONS[name](plan, config, cluster, pool, population, **extra)
                    config_results[name]["machine_before"] = quiet
                except Exception as error:
                    plan.log(f"  {name} failed: {type(error).__name__}: {error}")
                    plan.log(cluster.logs()[-3000:])
                    config_results[name] = {"error": f"{type(error).__name__}: {error}"}
                    pool.each("close")
                finally:
                    cluster.stop()
                config_results[name]["section_seconds"] = round(time.monotonic() - section_started, 1)
            results["configs"][config.key] = config_results
    results["seconds"] = round(time.monotonic() - started, 1)
    return results
