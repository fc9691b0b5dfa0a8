"""Every command that starts the site's web server (the Procfile, the Dockerfile's CMD, the
benchmark's) agrees: the frame limit, the keepalive, whose forwarded headers it trusts, and the
drain on SIGTERM within the stop grace period."""

from __future__ import annotations

import json
import re

from pubsub_site.tests.deploy.files import ROOT, dockerfile_instructions, find


def web_commands() -> dict[str, str]:
    """Every command that starts the site's web server, by where it is written."""
    from bench.plan import SERVERS
    from pubsub_site.cluster import Cluster, procfile_commands

    cmd = json.loads(dict(dockerfile_instructions())["CMD"])  # the last CMD: the runtime stage's
    commands = {
        "Procfile (make run, make cluster)": procfile_commands()["web"],
        "Dockerfile CMD (docker-compose.yml's web)": " ".join(cmd),
    }
    commands.update({f"bench: {key}": server.command for key, server in SERVERS.items() if "uvicorn" in server.command})
    # make run is honcho on the Procfile; make cluster (pubsub_site.cluster) runs its web line.
    assert 'honcho" -f Procfile start' in (ROOT / "scripts" / "run.sh").read_text()
    assert Cluster().web_command is None  # None: the Procfile's web line
    assert "-m pubsub_site.cluster" in (ROOT / "Makefile").read_text()
    return commands


def test_every_web_command_caps_websocket_frames_at_the_consumers_limit(production):
    """uvicorn buffers a frame up to --ws-max-size (16 MiB by default) before the consumer can
    refuse it: every command that starts it passes the consumer's own limit."""
    from django.conf import settings

    FRAME_MAX_BYTES = settings.WS_FRAME_MAX_BYTES

    assert "command" not in production["services"]["web"]  # compose runs the image's CMD
    commands = web_commands()
    assert len(commands) >= 4, commands
    for where, command in commands.items():
        assert command.split()[0] == "uvicorn", where
        sizes = re.findall(r"--ws-max-size[ =](\d+)", command)
        assert sizes == [str(FRAME_MAX_BYTES)], f"{where}: {command}"


def test_every_web_command_gives_a_keepalive_ping_a_minute_before_it_closes_the_socket():
    """A ping every 20 s, and 60 s for its answer (uvicorn's default, 20 s, made a process busy
    with a reconnect storm close its own clients, whose answers it read late, with 1011: each
    came back as one more handshake, until every socket of the survivors was cut)."""
    for where, command in web_commands().items():
        assert re.findall(r"--ws-ping-interval[ =](\S+)", command) == ["20"], f"{where}: {command}"
        assert re.findall(r"--ws-ping-timeout[ =](\S+)", command) == ["60"], f"{where}: {command}"


def test_no_web_command_trusts_forwarded_headers_from_everyone(production):
    for where, command in web_commands().items():
        assert not re.search(r"--forwarded-allow-ips[ =]['\"]?\*", command), where
    assert production["services"]["web"]["environment"]["FORWARDED_ALLOW_IPS"] not in {"*", ""}


def test_every_deploy_web_command_drains_its_sockets_within_the_stop_grace_period(production, nginx):
    """On SIGTERM the app drains its WebSockets (messaging.realtime.drain), which needs the ASGI
    lifespan (--lifespan on), lingers (compose's WS_DRAIN_LINGER_SECONDS, longer than nginx
    keeps a resolved address, so that nginx's connects to a stopping replica are refused, not
    left unanswered), then uvicorn waits --timeout-graceful-shutdown for what still runs: the
    same in every command that deploys the site, and the whole within the time compose (and
    pubsub_site.cluster) waits before SIGKILL. The benchmark's commands are left out: nothing
    restarts them."""
    from django.conf import settings

    from messaging.realtime.drain import CLOSE_GRACE_SECONDS
    from pubsub_site.cluster import STOP_TIMEOUT

    deploy = {where: command for where, command in web_commands().items() if not where.startswith("bench")}
    assert len(deploy) == 2, deploy
    timeouts = set()
    for where, command in deploy.items():
        assert re.findall(r"--lifespan[ =](\w+)", command) == ["on"], f"{where}: {command}"
        found = re.findall(r"--timeout-graceful-shutdown[ =](\d+)", command)
        assert len(found) == 1, f"{where}: {command}"
        timeouts.add(int(found[0]))
    assert len(timeouts) == 1, timeouts
    grace = production["services"]["web"]["stop_grace_period"]
    assert grace.endswith("s")
    (http,) = find(nginx, "http")
    (resolver,) = find(http[2], "resolver")
    (valid,) = [int(arg.removeprefix("valid=").removesuffix("s")) for arg in resolver[1] if arg.startswith("valid=")]
    linger = float(production["services"]["web"]["environment"]["WS_DRAIN_LINGER_SECONDS"])
    assert linger > valid, (linger, resolver)
    needed = settings.WS_DRAIN_SECONDS + CLOSE_GRACE_SECONDS + linger + timeouts.pop()
    assert needed < int(grace[:-1]) <= STOP_TIMEOUT, (needed, grace, STOP_TIMEOUT)
