"""What the fuzzers send: hostile values, the client frames of docs/protocol.md built from
them, and hostile query strings and forms for the HTTP views.

A frame is written as JSON text by ``dump``, which lets a value be a ``Raw`` fragment: JSON
that Python's encoder would not write (a number past 2**64, ``1e400``, a lone surrogate's
escape, a nesting 600 deep, ``NaN``). The server parses frames with orjson; ``parsed`` reads
a payload the same way, so a test knows what the server saw.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import orjson
from hypothesis import strategies as st

FRAME_MAX_BYTES = 64 * 1024  # messaging.realtime.consumers.FRAME_MAX_BYTES: a bigger frame is closed with 1009

# The contract's client frames, and the frame the server answers each with when all is well
# (None: success has no answer of its own; a refusal is an `error` frame, as for every type).
CLIENT_FRAMES: dict[str, str | None] = {
    "subscribe": "subscribed",
    "unsubscribe": "unsubscribed",
    "send": "ack",
    "clap": "claps",
    "typing": None,
    "read": None,
    "edit": None,
    "delete": None,
    "ping": "pong",
}


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written as it is."""

    text: str

    def __repr__(self) -> str:
        return f"Raw({self.text[:80]!r}{'...' if len(self.text) > 80 else ''})"


def dump(value: object) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)  # ensure_ascii: a lone surrogate goes out as its \\udxxx escape


def parsed(payload: str | bytes) -> object:
    """The payload as the server's parser reads it, or None when it is not JSON to it."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


# --- Values ------------------------------------------------------------------------------

ODD_TEXT = [
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u200e\u2066\u2069",  # direction marks and isolates
    "\ufeff",
    "\u200b" * 50,
    "e\u0301" * 40,  # combining marks
    "Z\u0351\u0356\u0362" * 30,
    "\U0001f468\u200d\U0001f469\u200d\U0001f467" * 10,  # a ZWJ family
    "\U0010ffff",
    "\ufffd\ufffe\uffff",
    "\r\n\t\x0b\x0c\x1b[31m",
    "<script>alert(1)</script>",
    "'; DROP TABLE messaging_message; --",
    "%00%n%s{{}}${}",
    "../../etc/passwd",
    "٣٤٥",  # Arabic-Indic digits: int() reads them
    "１２",  # full-width digits
    " 7 ",
    "-0",
    "0x1f",
    "1e3",
]
# Lone and reversed surrogates, and an escaped NUL: valid JSON escapes that no UTF-8 can hold.
SURROGATE_STRINGS = [Raw('"\\ud800"'), Raw('"x\\udfff"'), Raw('"\\udc00\\ud800"'), Raw('"\\u0000"')]
HUGE_NUMBERS = [
    2**53,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**30,
    -(10**30),
    1.5,
    -0.0,
    1e308,
    5e-324,
    Raw("1e400"),
    Raw("-1e400"),
    Raw("9999999999999999999.1"),
    Raw("1" + "0" * 400),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("0.0e-99999"),
]


def deep(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


deep_values = st.builds(
    deep, st.sampled_from([2, 50, 253, 254, 255, 256, 300, 600, 1023, 1100]), st.sampled_from(["list", "dict"])
)
long_strings = st.one_of(
    st.integers(min_value=4001, max_value=60_000).map(lambda n: "x" * n),
    st.integers(min_value=1, max_value=15_000).map(lambda n: "\U0001f600" * n),  # 4 bytes each
    st.integers(min_value=100, max_value=4000).map(lambda n: "a " * n),
)
odd_strings = st.one_of(
    st.sampled_from(ODD_TEXT),
    st.sampled_from(SURROGATE_STRINGS),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Mn", "Co"]), max_size=20),
)
numbers = st.one_of(
    st.sampled_from(HUGE_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_strings)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
hostile_values = st.one_of(json_values, deep_values, long_strings)


def small_ints(latest: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=latest + 3)


# --- Client frames -----------------------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """One WebSocket frame: text or binary, and what it carries."""

    payload: str | bytes

    @property
    def size(self) -> int:
        return (
            len(self.payload) if isinstance(self.payload, bytes) else len(self.payload.encode("utf-8", "surrogatepass"))
        )

    @property
    def oversized(self) -> bool:
        return self.size > FRAME_MAX_BYTES

    @property
    def frame(self) -> dict | None:
        """The JSON object the server reads, if it reads one."""
        if isinstance(self.payload, bytes):
            return None
        value = parsed(self.payload)
        return value if isinstance(value, dict) else None

    def __repr__(self) -> str:
        text = self.payload if isinstance(self.payload, str) else repr(self.payload)
        return f"Wire({text[:300]!r}{f'... ({self.size} bytes)' if len(text) > 300 else ''})"


def _valid_fields(kind: str, slugs: list[str], latest: int) -> st.SearchStrategy[dict]:
    """Fields a correct client would send for ``kind`` (in the fuzz's rooms), to be spoilt."""
    room = st.sampled_from(slugs)
    seq = st.integers(min_value=1, max_value=max(1, latest))
    if kind == "subscribe":
        return st.fixed_dictionaries(
            {"room": room}, optional={"since": st.none() | small_ints(latest), "rev": st.none() | small_ints(latest)}
        )
    if kind in ("unsubscribe", "typing"):
        return st.fixed_dictionaries({"room": room})
    if kind == "send":
        return st.fixed_dictionaries(
            {"room": room, "body": st.text(min_size=1, max_size=30), "client_id": st.uuids().map(str)},
            optional={"reply_to": seq},
        )
    if kind == "clap":
        return st.fixed_dictionaries({"room": room, "seq": seq}, optional={"count": st.integers(1, 60)})
    if kind == "read" or kind == "delete":
        return st.fixed_dictionaries({"room": room, "seq": seq})
    if kind == "edit":
        return st.fixed_dictionaries({"room": room, "seq": seq, "body": st.text(min_size=1, max_size=30)})
    return st.just({})  # ping


FIELD_NAMES = ["room", "since", "rev", "body", "client_id", "seq", "count", "reply_to", "ref", "type"]


@st.composite
def spoilt(draw, kind: str, slugs: list[str], latest: int) -> dict:
    """A ``kind`` frame with some fields dropped, retyped or added, and maybe a hostile ``ref``."""
    fields = dict(draw(_valid_fields(kind, slugs, latest)))
    for key in list(fields):
        action = draw(st.sampled_from(["keep", "keep", "drop", "hostile"]))
        if action == "drop":
            del fields[key]
        elif action == "hostile":
            fields[key] = draw(hostile_values)
    extras = draw(
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES[:-1]), st.text(max_size=12)), hostile_values, max_size=3)
    )
    for key, value in extras.items():
        if key != "type":
            fields.setdefault(key, value)
    frame = {"type": kind, **fields}
    if draw(st.booleans()):
        frame["ref"] = draw(st.one_of(st.text(max_size=20), st.integers(), hostile_values))
    return frame


def typed_frames(kind: str, slugs: list[str], latest: int) -> st.SearchStrategy[Wire]:
    return spoilt(kind, slugs, latest).map(lambda frame: Wire(dump(frame)))


def _type_not_known(value: object) -> bool:
    return not (isinstance(value, str) and value in CLIENT_FRAMES)


untyped_frames = st.one_of(
    # an object without `type`, or with one that is not a known type's name
    st.dictionaries(st.sampled_from(FIELD_NAMES[:-1]), hostile_values, max_size=4).map(lambda f: Wire(dump(f))),
    st.builds(
        lambda t, f: Wire(dump({"type": t, **f})),
        st.one_of(hostile_values, st.sampled_from([k.upper() for k in CLIENT_FRAMES] + ["", " ping", "pong"])).filter(
            _type_not_known
        ),
        st.dictionaries(st.sampled_from(FIELD_NAMES[:-1]), hostile_values, max_size=3),
    ),
    # JSON that is not an object
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: Wire(dump(v))),
    deep_values.map(lambda v: Wire(v.text)),
    # not JSON
    st.text(max_size=100).map(Wire),
    st.sampled_from(["", " ", "{", '{"type": "ping"', "{'type': 'ping'}", "null", "\ufeff{}", '{"type":"ping"}x']).map(
        Wire
    ),
    st.sampled_from([s.text for s in SURROGATE_STRINGS]).map(lambda s: Wire('{"type": ' + s + "}")),
    # binary
    st.binary(max_size=200).map(Wire),
    st.just(Wire(b'{"type": "ping"}')),
    # past the frame limit (a clean close with 1009)
    st.integers(min_value=FRAME_MAX_BYTES + 1, max_value=FRAME_MAX_BYTES + 2048).map(
        lambda n: Wire('{"type": "ping", "pad": "' + "x" * n + '"}')
    ),
)


def client_frames(slugs: list[str], latest: int) -> dict[str, st.SearchStrategy[Wire]]:
    """One strategy per kind of frame: each client frame type, and ``raw`` (no known type)."""
    return {**{kind: typed_frames(kind, slugs, latest) for kind in CLIENT_FRAMES}, "raw": untyped_frames}


def uuid_text() -> str:
    return str(uuid.uuid4())


# --- HTTP --------------------------------------------------------------------------------

# Every query parameter and form field the views read (grep request.GET / request.POST, and
# the forms' fields), and a few they do not.
PARAM_NAMES = [
    "q", "before", "after", "around", "limit", "page", "seqs", "to", "next", "name", "topic",
    "visibility", "username", "usernames", "reason", "duration", "seconds", "password",
    "password1", "password2", "email", "mention_emails", "csrfmiddlewaretoken", "act", "seq",
]  # fmt: skip
HOSTILE_PARAMS = [
    "",
    "0",
    "-1",
    "1",
    "200",
    "201",
    "9999999999999999999",
    "9999999999999999999.1",
    "99999999999999999999999999999999999999",
    "-9223372036854775809",
    "1e400",
    "1e3",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "1_000",
    " 5 ",
    "٣",
    "１２",
    "\x00",
    "a\x00b",
    "\ud800",
    "\u202e",
    "null",
    "true",
    "[]",
    "{}",
    "%",
    "%zz",
    "x" * 5000,
    "public",
    "private",
    "1 hour",
    "forever",
    "//evil.example/",
    "https://evil.example/",
    "javascript:alert(1)",
    "\r\nSet-Cookie: x=1",
]
param_values = st.one_of(
    st.sampled_from(HOSTILE_PARAMS),
    st.text(max_size=30),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats().map(str),
    st.text(min_size=1, max_size=4).map(lambda t: t * 1000),
)
params = st.lists(st.tuples(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=10)), param_values), max_size=5)
