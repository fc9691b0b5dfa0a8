"""What the fault and scale-out tests share: their own Redis servers, a TCP proxy to cut a
link, clients that follow the wire contract through failures, a ledger of every send, and
the final count against PostgreSQL.

Every send is recorded per attempt as acked, refused (an `error` frame: nothing stored) or
unknown (no answer: the socket died or the answer timed out). A retry reuses the
``client_id``, so whatever the outcomes, a message is stored once or not at all.

The kit's modules, each for one thing:
- processes: the environment of a cluster a test builds itself, the suite's Redis URLs,
  users, web processes and rq workers started and waited for, a process's memory, logs and
  tracebacks;
- redis_servers: a redis-server of the test's own (RedisServer) and Sentinels watching it;
- proxy: a TCP proxy that cuts a link and restores it (TcpProxy);
- ledger: every send and the outcome of each attempt at it (Ledger, Send);
- client: the client that follows the contract through failures (ChatClient), and talk,
  blast and wait_for_delivery over many of them;
- counting: what Redis and PostgreSQL hold, and the final count (verify, Verdict);
- chaos: the table `make chaos` prints and writes into docs/reliability.md, and report.

The names the tests use are imported here, so that they import them from tests.faults.kit.
"""

from __future__ import annotations

from tests.faults.kit.chaos import (
    CHAOS_ROWS,
    chaos_row,
    chaos_table,
    longest_outage,
    report,
    verdict_row,
    write_reliability_table,
)
from tests.faults.kit.client import ChatClient, blast, open_clients, talk, wait_for_delivery
from tests.faults.kit.counting import (
    client_stats,
    percentile,
    pg_rows,
    room_latest,
    stored_anywhere,
    verify,
    wait_for_rows,
)
from tests.faults.kit.ledger import ACKED, UNKNOWN, Ledger
from tests.faults.kit.processes import (
    base_env,
    log_text,
    make_users,
    redis_env,
    rss_mib,
    start_webs,
    suite_redis_port,
    suite_redis_url,
    through_proxy,
    tracebacks,
    wait_for_workers,
    web_pid,
)
from tests.faults.kit.proxy import TcpProxy
from tests.faults.kit.redis_servers import RedisServer, Sentinels

__all__ = [
    "ACKED",
    "CHAOS_ROWS",
    "UNKNOWN",
    "ChatClient",
    "Ledger",
    "RedisServer",
    "Sentinels",
    "TcpProxy",
    "base_env",
    "blast",
    "chaos_row",
    "chaos_table",
    "client_stats",
    "log_text",
    "longest_outage",
    "make_users",
    "open_clients",
    "percentile",
    "pg_rows",
    "redis_env",
    "report",
    "room_latest",
    "rss_mib",
    "start_webs",
    "stored_anywhere",
    "suite_redis_port",
    "suite_redis_url",
    "talk",
    "through_proxy",
    "tracebacks",
    "verdict_row",
    "verify",
    "wait_for_delivery",
    "wait_for_rows",
    "wait_for_workers",
    "web_pid",
    "write_reliability_table",
]
