"""The sections of ``python -m bench`` (``--only``), by name (``SECTIONS``). Each is called on servers
started for it alone, with the plan, its configuration, those servers, the client pool and the
population of users, and returns its figures (a dict, the section's part of the run's JSON);
``bench.runner`` runs them one after the other. The sections and what they measure are listed in
``bench.runner``; ``api`` is in ``bench.http_api``.
"""

from __future__ import annotations

from bench import http_api
from bench.sections.connections import section_handshake, section_storm
from bench.sections.ladders import section_fanout, section_latency, section_spectators
from bench.sections.memory import section_memory
from bench.sections.persistence import section_persistence
from bench.sections.profiling import section_profile

SECTIONS = {
    "latency": section_latency,
    "fanout": section_fanout,
    "spectators": section_spectators,
    "handshake": section_handshake,
    "storm": section_storm,
    "persistence": section_persistence,
    "memory": section_memory,
    "profile": section_profile,
    "api": http_api.section_api,
}
