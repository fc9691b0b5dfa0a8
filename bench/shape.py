"""A shape of rooms x members under load (``Shape``): its connections opened through the client pool
(``connect``, or all dropped and back in ``reconnect_storm``), a step of sending at a delivered
rate, measured and judged (every send acked, nothing lost, duplicated or out of order, no one
cut off, p99 under the limit), and the ladder that steps the rate up to the shape's capacity.
"""

from __future__ import annotations

import time
from collections import Counter

from bench import fixtures
from bench.clients import ClientPool
from bench.meters import CpuMeter, join_arrays, percentiles_ms, seconds_percentiles, wait_idle
from bench.plan import P99_LIMIT_MS, Plan
from bench.servers import web_pids
from pubsub_site.cluster import Cluster


class Shape:
    """Rooms x members connected through the client pool, and the seq range each room had.

    ``members`` connections per room send and receive; ``spectators`` more per room only
    receive. ``users`` / ``spectator_users``: distinct users among them (the others are
    more tabs of the same users). ``members_join=False``: only each room's creator is a
    member up front; the others join at their first subscribe.
    """

    def __init__(
        self,
        plan: Plan,
        pool: ClientPool,
        population,
        ports: list[int],
        rooms: int,
        members: int,
        tag: str,
        users: int | None = None,
        spectators: int = 0,
        spectator_users: int = 0,
        members_join: bool = True,
    ):
        self.plan = plan
        self.pool = pool
        self.rooms_count = rooms
        self.senders = members
        self.spectators = spectators
        self.members = members + spectators  # connections per room
        self.users = min(users or members, members) + (min(spectator_users or spectators, spectators))
        self.rooms = fixtures.make_rooms(
            population, rooms=rooms, members=self.members, tag=tag, users=self.users, members_join=members_join
        )
        self.top = {slug: 0 for slug, _ in self.rooms}
        self.ports = ports
        self.cpu_groups: dict[str, list[int]] = {}

    def specs(self) -> list[list[dict]]:
        per_client: list[list[dict]] = [[] for _ in range(len(self.pool))]
        n = 0
        for slug, sessions in self.rooms:
            for i, session in enumerate(sessions):
                spec = {"port": self.ports[n % len(self.ports)], "session": session, "room": slug,
                        "sends": i < self.senders}  # fmt: skip
                per_client[n % len(self.pool)].append(spec)
                n += 1
        return per_client

    def connect(self, concurrency: int = 20, budget: float | None = None) -> dict:
        """Open every connection, ``concurrency`` handshakes at once over all client processes."""
        per_client = self.specs()
        each = max(1, concurrency // len(self.pool))
        started = time.monotonic()
        replies = self.pool.call(
            "connect",
            [{"specs": specs, "concurrency": each, "timeout": 60, "budget": budget} for specs in per_client],
        )
        return self._joined(replies, time.monotonic() - started)

    def reconnect_storm(self) -> dict:
        """Every connection dropped at once, then back (bench.loadgen.Agent.reconnect)."""
        start_at = time.monotonic() + 0.3
        replies = self.pool.each("reconnect", start_at=start_at, handshake_timeout=60)
        return self._joined(replies, max(r["seconds"] for r in replies))

    def _joined(self, replies: list[dict], seconds: float) -> dict:
        connected = sum(r["connected"] for r in replies)
        return {
            "asked": sum(r["asked"] for r in replies),
            "connections": connected,
            "failed": sum(r["failed"] for r in replies),
            "skipped_after_budget": sum(r.get("skipped", 0) for r in replies),
            "failures": [f for r in replies for f in r["failures"]][:5],
            "retries_1013": sum(r["retries_1013"] for r in replies),
            "retries_other": sum(r["retries_other"] for r in replies),
            "retry_reasons": dict(sum((Counter(r["retry_reasons"]) for r in replies), Counter()).most_common(5)),
            "seconds": round(seconds, 2),
            "per_s": round(connected / seconds, 1) if seconds else None,
            "each": seconds_percentiles([x for r in replies for x in r["seconds_each"]]),
        }

    def step(
        self,
        delivered_rate: int,
        *,
        duration: float,
        keep_ack_times: bool = False,
        p99_limit: float | None = P99_LIMIT_MS,
    ) -> dict:
        """Send at ``delivered_rate / members`` messages a second for ``duration`` s; measure.

        The step passes when every send is acked, nothing is lost, duplicated or out of
        order, no connection is cut off and (unless ``p99_limit`` is None) p99 < ``p99_limit``.
        """
        sends_per_s = delivered_rate / self.members
        clients = len(self.pool)
        total = round(sends_per_s * duration)  # the sends of the step, shared out exactly
        shares = [total // clients + (i < total % clients) for i in range(clients)]
        start_at = time.monotonic() + 0.3
        with CpuMeter({**self.cpu_groups, "clients": self.pool.pids}) as meter:
            common = {
                "duration": duration,
                "start_at": start_at,
                "senders": None,
                "drain_timeout": self.plan.drain_timeout,
                "keep_ack_times": keep_ack_times,
            }
            runs = self.pool.call(
                "run",
                [{**common, "rate": share / duration, "total": share} for share in shares],
                timeout=duration + 3 * self.plan.drain_timeout + 60,
            )
        ranges = {}
        for slug in self.top:
            acked = [seq for r in runs for seq in r["acked"].get(slug, [])]
            hi = max(acked, default=self.top[slug])
            ranges[slug] = (self.top[slug], hi)
            self.top[slug] = hi
        tallies = self.pool.each("tally", ranges=ranges)
        latency = join_arrays([t["latency_ns"] for t in tallies])
        ack_latency = join_arrays([r["ack_latency_ns"] for r in runs])
        errors = Counter()
        for r in runs:
            errors.update(r["error_codes"])
        sent = sum(r["sent"] for r in runs)
        acked_count = sum(len(v) for r in runs for v in r["acked"].values())
        result = {
            "target_delivered_per_s": delivered_rate,
            "sends_per_s": round(sends_per_s, 2),
            "rooms": self.rooms_count,
            "members_per_room": self.members,
            "users_per_room": self.users,
            "duration_s": duration,
            "sent": sent,
            "acked": acked_count,
            "delivered": sum(t["delivered"] for t in tallies),
            "lost": sum(t["lost"] for t in tallies),
            "duplicated": sum(t["duplicated"] for t in tallies),
            "out_of_order": sum(t["out_of_order"] for t in tallies),
            "send_errors": sum(r["send_errors"] for r in runs),
            "unacked": sum(r["unacked"] for r in runs),
            "error_codes": dict(errors),
            "connections": sum(t["connections"] for t in tallies),
            "closed_members": sum(t["closed_members"] for t in tallies),
            "outside_range": sum(t["outside_range"] for t in tallies),
            "foreign": sum(r["foreign"] for r in runs),
            "ranges": ranges,
            "cores_used": meter.cores,
            **percentiles_ms(latency),
            **{f"ack_{k}": v for k, v in percentiles_ms(ack_latency).items()},
        }
        result["delivered_per_s"] = round(result["delivered"] / duration)
        # Web CPU per delivered copy: the web processes' CPU seconds over the step (sending,
        # then the drain) over the copies delivered, in microseconds.
        web_s = meter.seconds.get("web")
        result["web_cpu_s"] = web_s
        result["web_us_per_copy"] = round(web_s / result["delivered"] * 1e6, 1) if result["delivered"] else None
        expected = total
        reasons = []
        if result["lost"] or result["duplicated"] or result["out_of_order"]:
            reasons.append("lost/duplicated/out-of-order")
        if result["foreign"]:
            reasons.append(f"{result['foreign']} frames of another run")
        if result["closed_members"]:
            reasons.append(f"{result['closed_members']} connections cut off")
        if result["send_errors"] or result["unacked"] or sent < expected:
            reasons.append("send errors or unacked")
        if result["p99_ms"] is None or (p99_limit is not None and result["p99_ms"] >= p99_limit):
            reasons.append(f"p99 ≥ {p99_limit:.0f} ms" if result["p99_ms"] is not None else "nothing delivered")
        result["p99_limit_ms"] = p99_limit
        result["pass"] = not reasons
        result["why_not"] = ", ".join(reasons)
        if keep_ack_times:
            result["_ack_times"] = [a for r in runs for a in r["ack_times"]]
        return result

    def close(self) -> None:
        self.pool.each("close")
        fixtures.close_old_rooms([slug for slug, _ in self.rooms])


def new_shape(
    plan, pool, population, cluster: Cluster, rooms: int, members: int, tag: str, ports=None, users=None, **extra
) -> Shape:
    shape = Shape(plan, pool, population, ports or cluster.ports, rooms, members, tag, users, **extra)
    shape.cpu_groups = {"web": web_pids(cluster), "worker": [w.pid for w in cluster.workers]}
    if plan.redis_pid:
        shape.cpu_groups["redis"] = [plan.redis_pid]
    return shape


def ladder(
    shape: Shape,
    plan: Plan,
    rates: list[int],
    fixed: list[int],
    pids: list[int],
    name: str,
    p99_limit: float | None = P99_LIMIT_MS,
) -> dict:
    """Step the delivered rate up; keep going past a failure only for the fixed report points."""
    steps = []
    capacity = 0
    failed = False
    for rate in rates:
        if failed and rate not in fixed:
            continue
        if failed and any(s.get("p99_ms") is None or s["p99_ms"] > 2000 for s in steps[-1:]):
            steps.append({"target_delivered_per_s": rate, "skipped": "saturated at a lower rate", "pass": False})
            continue
        wait_idle(pids)
        step = shape.step(rate, duration=plan.duration, p99_limit=p99_limit)
        steps.append(step)
        plan.log(f"    {name} {rate:>6}/s: {step_line(step)}")
        if step["pass"] and not failed:
            capacity = rate
        else:
            failed = True
        if failed and not any(r in fixed for r in rates if r > rate):
            break
    return {"steps": steps, "capacity_delivered_per_s": capacity, "capacity_reached_top": not failed}


def step_line(step: dict) -> str:
    if "skipped" in step:
        return step["skipped"]
    return (
        f"delivered {step['delivered_per_s']:>6}/s p50 {step['p50_ms']} p99 {step['p99_ms']} max {step['max_ms']} ms"
        f" lost {step['lost']} dup {step['duplicated']} ooo {step['out_of_order']}"
        f" errors {step['send_errors']}+{step['unacked']} {'ok' if step['pass'] else 'FAIL: ' + step['why_not']}"
        f" | web {step.get('web_us_per_copy')} µs/copy | cores: "
        + " ".join(f"{k} {v}" for k, v in step.get("cores_used", {}).items())
    )
