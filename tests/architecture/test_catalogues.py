"""Every layer event is built in protocol/events.py and every client frame in protocol/wire.py.

A ``"type": …`` literal in a dict (or ``type=`` in ``dict(…)``) anywhere else in the
project's modules fails this test: a new event or frame goes into its catalogue, where
docs/protocol.md's reader finds all of them. ASGI's own messages (``websocket.send``,
``http.response.start``, …) are the server's vocabulary, not ours, and are left out, as
are forms, whose ``type`` is a widget's HTML attribute.
"""

from __future__ import annotations

import ast

from messaging import frames, metrics
from messaging.realtime import consumers
from tests.architecture.test_import_graph import project_modules

ASGI_PREFIXES = ("websocket.", "http.", "lifespan.")
LAYER_EVENTS = "protocol.events"
CLIENT_FRAMES = "protocol.wire"


def type_literals(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            pairs = zip(node.keys, node.values, strict=True)
            found += [
                (v.lineno, v.value)
                for k, v in pairs
                if isinstance(k, ast.Constant) and k.value == "type" and isinstance(v, ast.Constant)
            ]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            found += [
                (kw.value.lineno, kw.value.value)
                for kw in node.keywords
                if kw.arg == "type" and isinstance(kw.value, ast.Constant)
            ]
    return [(line, value) for line, value in found if isinstance(value, str) and not value.startswith(ASGI_PREFIXES)]


def literals_by_module() -> dict[str, list[tuple[int, str]]]:
    found = {}
    for module, path in project_modules().items():
        if module.endswith(".forms"):
            continue
        literals = type_literals(ast.parse(path.read_text(), filename=str(path)))
        if literals:
            found[module] = literals
    return found


def test_layer_events_and_client_frames_are_each_built_in_their_one_catalogue():
    misplaced = []
    for module, literals in literals_by_module().items():
        for line, value in literals:
            home = LAYER_EVENTS if "." in value else CLIENT_FRAMES
            if module != home:
                misplaced.append(f"{module}:{line} builds {value!r}, which belongs in {home}")
    assert misplaced == []
    assert set(literals_by_module()) == {LAYER_EVENTS, CLIENT_FRAMES}


def test_each_type_is_built_once_in_its_catalogue():
    for module in (LAYER_EVENTS, CLIENT_FRAMES):
        values = [value for _, value in literals_by_module()[module]]
        assert len(values) == len(set(values)), module


def test_every_layer_event_has_a_handler_on_the_consumer():
    events = {value for _, value in literals_by_module()[LAYER_EVENTS]}
    assert "room.message" in events
    missing = [e for e in events if not callable(getattr(consumers.RoomsConsumer, e.replace(".", "_"), None))]
    assert missing == []


def test_the_metrics_count_the_frames_the_consumer_handles():
    assert tuple(consumers.FRAME_HANDLERS) == frames.FRAME_TYPES
    assert set(metrics._frame) == {*consumers.FRAME_HANDLERS, "unknown"}


def test_a_frame_built_outside_its_catalogue_is_found():
    tree = ast.parse(
        'send({"type": "ack", "seq": 1})\nevent = dict(type="room.typing")\nasgi = {"type": "websocket.send"}'
    )
    assert sorted(type_literals(tree)) == [(1, "ack"), (2, "room.typing")]
