"""The subnet of each stack's compose network: a /24 that no other Docker engine on this host
has or will take while this process runs (free_subnet), and the variables of
docker-compose.yml that put the network there."""

from __future__ import annotations

import fcntl
import ipaddress
import random
import socket
import struct
from pathlib import Path

import pytest

# Each stack's compose network: a /24 of SUBNET_POOL (free_subnet).
SUBNET_POOL = ipaddress.IPv4Network("172.30.0.0/16")
COMPOSE_DEFAULT_SUBNET = ipaddress.IPv4Network("172.30.57.0/24")  # docker-compose.yml's PUBSUB_SUBNET
SUBNET_LOCKS = Path("/tmp/pubsub-container-subnets")
HELD_SUBNETS: list = []  # the lock files of this process's subnets, open until it exits


def host_routes() -> list[ipaddress.IPv4Network]:
    """The networks the host routes (its main table, default route left out): every
    interface's, every Docker engine's bridge networks included."""
    routes = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[7], 16) == 0:
            continue  # the default route
        destination, mask = (socket.inet_ntoa(struct.pack("<L", int(fields[i], 16))) for i in (1, 7))
        routes.append(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
    return routes


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 for a stack's compose network that no other Docker engine on this host has or
    will take while this process runs. Every engine's bridge networks are routes of the
    host's one network namespace: two with one subnet, and docker-proxy's connections to the
    proxy's address go to whichever bridge the kernel finds first, another engine's
    perhaps (CI may run its container tests beside a developer's). So: never
    docker-compose.yml's default (what any checkout's stack may take), none the host routes
    now, and one that no other process of this code holds (a lock file, kept until this
    process exits)."""
    SUBNET_LOCKS.mkdir(exist_ok=True)
    routed = host_routes()
    candidates = [
        net
        for net in SUBNET_POOL.subnets(new_prefix=24)
        if net != COMPOSE_DEFAULT_SUBNET and not any(net.overlaps(route) for route in routed)
    ]
    random.shuffle(candidates)
    for net in candidates:
        lock = open(SUBNET_LOCKS / f"{net.network_address}.lock", "w")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        HELD_SUBNETS.append(lock)
        return net
    pytest.fail(f"no /24 of {SUBNET_POOL} is free on this host (routes: {routed})")


def subnet_settings(net: ipaddress.IPv4Network) -> dict[str, str]:
    """docker-compose.yml's variables that put the project's network on ``net`` (its layout:
    the proxy at .10, the other containers in the upper half)."""
    proxy = str(net.network_address + 10)
    return {
        "PUBSUB_SUBNET": str(net),
        "PUBSUB_DYNAMIC_RANGE": f"{net.network_address + 128}/25",
        "PROXY_ADDRESS": proxy,
        "FORWARDED_ALLOW_IPS": proxy,
    }
