"""The room page's stream (static/js/room-stream.js, run under Node, no browser): every message
once and in seq order, a gap resubscribes from what was seen, our pending messages are
confirmed only by our own broadcast or ack and go out again after a resubscribe, and a replay
cut short asks the page to reload its history.

Each scenario is a short script against a stream whose socket is a list: `sent` holds the
frames the stream put on it, `heard` the callbacks the page got, in order."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from messaging.frames import client_id_time

ROOT = Path(__file__).resolve().parents[3]
STREAM_JS = ROOT / "static" / "js" / "room-stream.js"
ME, BOB = 7, 8

# argv: the module, then ME's and BOB's user ids. stdin: the scenario's body, run with `stream`,
# `sent`, `heard`, `message`, `fire` (runs the timers set so far), `ME` and `BOB` in scope.
# stdout: {"sent": [...], "heard": [...], "result": what the scenario returned}.
HARNESS = """
const { create } = require(process.argv[1]);
const [ME, BOB] = [Number(process.argv[2]), Number(process.argv[3])];
const scenario = require("fs").readFileSync(0, "utf8");
const sent = [];
const heard = [];
const timers = [];
const record = (name) => (...args) => heard.push([name, ...args.map((a) => (a && a.seq !== undefined ? a.seq : a))]);
const stream = create({
  room: "lobby",
  userId: ME,
  lastSeq: "3",
  send(frame) { sent.push(frame); return true; },
  timers: {
    setTimeout(fn, ms) { timers.push({ fn, ms }); return timers.length; },
    clearTimeout(id) { if (id) timers[id - 1].fn = null; },
    random: () => 0,
  },
  onMessage: record("message"),
  onMessageAgain: record("again"),
  onAck: record("ack"),
  onFailed: record("failed"),
  onReloadHistory: record("reload"),
  onSubscribed: record("subscribed"),
  onEvent: (frame) => heard.push(["event", frame.type]),
});
function message(seq, authorId = BOB, clientId = `c${seq}`) {
  const author = { id: authorId, username: "u" };
  return { type: "message", room: "lobby", seq, author, body: "hi", client_id: clientId };
}
function fire() {
  const due = timers.splice(0).filter((t) => t.fn);
  due.forEach((t) => t.fn());
  return due.map((t) => t.ms);
}
const names = ["stream", "sent", "heard", "message", "fire", "ME", "BOB"];
const result = new Function(...names, scenario)(stream, sent, heard, message, fire, ME, BOB);
process.stdout.write(JSON.stringify({ sent, heard, result: result === undefined ? null : result }));
"""


def run(scenario: str) -> dict:
    node = shutil.which("node")
    if node is None:
        # Not a skip: scripts/test-deps.sh installs nodejs; without it the client's protocol is untested.
        pytest.fail("no `node` on PATH: apt-get install nodejs")
    done = subprocess.run(
        [node, "-e", HARNESS, str(STREAM_JS), str(ME), str(BOB)],
        input=scenario,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# The ref of every subscribe, by which the stream knows an error about it.
REF = "subscribe"
SUBSCRIBE_FROM_3 = {"type": "subscribe", "room": "lobby", "since": 3, "rev": None, "ref": REF}


def subscribes(sent: list[dict]) -> list[dict]:
    return [frame for frame in sent if frame["type"] == "subscribe"]


def test_it_subscribes_on_open_from_the_pages_last_seq():
    out = run("stream.opened();")
    assert out["sent"] == [SUBSCRIBE_FROM_3]


def test_a_gap_in_seq_resubscribes_with_the_last_seen_since_and_rev():
    out = run("""
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 3, rev: 10, recovered: true });
        stream.receive(message(4));
        stream.receive({ type: "claps", room: "lobby", seq: 4, total: 1, rev: 12 });
        stream.receive(message(6));  // 5 never came
        return [stream.lastSeq(), stream.lastRev()];
    """)
    assert subscribes(out["sent"]) == [
        {"type": "subscribe", "room": "lobby", "since": 3, "rev": None, "ref": REF},
        {"type": "subscribe", "room": "lobby", "since": 4, "rev": 12, "ref": REF},
    ]
    # The message after the gap is not shown: the replay brings 5, then 6, in order.
    assert ["message", 6] not in out["heard"]
    assert out["result"] == [4, 12]


def test_the_replay_after_a_gap_is_shown_in_order_and_once():
    out = run("""
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 3, rev: 1, recovered: true });
        stream.receive(message(5));  // a gap: resubscribes
        stream.receive({ type: "subscribed", room: "lobby", seq: 5, rev: 1, recovered: true });
        stream.receive(message(4));
        stream.receive(message(5));
    """)
    assert [h for h in out["heard"] if h[0] == "message"] == [["message", 4], ["message", 5]]


def test_duplicate_and_older_seqs_are_not_shown_again():
    out = run("""
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 3, rev: null, recovered: true });
        stream.receive(message(4));
        stream.receive(message(4));
        stream.receive(message(2));
        stream.receive(message(5));
        return stream.lastSeq();
    """)
    assert [h for h in out["heard"] if h[0] in ("message", "again")] == [
        ["message", 4],
        ["again", 4],  # the page may refresh its state, never append it
        ["again", 2],
        ["message", 5],
    ]
    assert subscribes(out["sent"]) == [subscribes(out["sent"])[0]]  # no resubscribe for an old seq
    assert out["result"] == 5


def test_frames_of_another_room_are_ignored():
    out = run("""
        stream.opened();
        stream.receive({ ...message(4), room: "other" });
        stream.receive({ type: "claps", room: "other", seq: 4, total: 1, rev: 99 });
        return [stream.lastSeq(), stream.lastRev()];
    """)
    assert out["heard"] == []
    assert out["result"] == [3, None]


def test_an_ack_confirms_only_the_senders_own_pending_client_id():
    out = run("""
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 3, rev: null, recovered: true });
        const mine = stream.post("mine");
        const other = stream.post("another of mine", 2);
        // Bob's message that happens to carry our client_id is his, not our confirmation.
        stream.receive(message(4, BOB, mine));
        const afterBob = [stream.isPending(mine), stream.isPending(other)];
        stream.receive({ type: "ack", room: "lobby", client_id: other, seq: 5 });
        const afterAck = [stream.isPending(mine), stream.isPending(other)];
        stream.receive(message(5, ME, other));  // its broadcast follows the ack
        sent.length = 0;
        stream.opened();  // reconnected: only what is still pending goes out again
        stream.receive({ type: "subscribed", room: "lobby", seq: 5, rev: null, recovered: true });
        stream.receive(message(6, ME, mine));  // our own broadcast confirms ours
        return { mine, other, afterBob, afterAck, afterOwn: stream.isPending(mine) };
    """)
    result = out["result"]
    assert result["afterBob"] == [True, True]
    assert result["afterAck"] == [True, False]
    assert result["afterOwn"] is False
    assert ["ack", result["other"]] in out["heard"]
    assert out["sent"] == [
        {"type": "subscribe", "room": "lobby", "since": 5, "rev": None, "ref": REF},
        {"type": "send", "room": "lobby", "body": "mine", "client_id": result["mine"], "ref": result["mine"]},
    ]


def test_a_message_written_before_the_subscription_waits_and_keeps_its_order():
    out = run("""
        const first = stream.post("one");
        const second = stream.post("two", 3);
        const early = sent.length;
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 3, rev: null, recovered: true });
        return { early, ids: [first, second] };
    """)
    first, second = out["result"]["ids"]
    assert out["result"]["early"] == 0
    assert first != second
    assert out["sent"][1:] == [
        {"type": "send", "room": "lobby", "body": "one", "client_id": first, "ref": first},
        {"type": "send", "room": "lobby", "body": "two", "client_id": second, "ref": second, "reply_to": 3},
    ]


def test_a_retryable_error_resends_with_the_same_client_id_and_a_refusal_fails_it():
    out = run("""
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 3, rev: null, recovered: true });
        const kept = stream.post("kept");
        const refused = stream.post("refused");
        sent.length = 0;
        stream.receive({ type: "error", room: "lobby", code: "rate_limited", ref: kept, retry_after: 2 });
        stream.receive({ type: "error", room: "lobby", code: "muted", ref: refused });
        const waits = fire();
        return { kept, refused, waits, pending: [stream.isPending(kept), stream.isPending(refused)] };
    """)
    result = out["result"]
    assert result["waits"] == [2000]
    assert result["pending"] == [True, False]
    assert ["failed", result["refused"]] in out["heard"]
    assert ["event", "error"] in out["heard"]  # the page still says why
    kept = result["kept"]
    assert out["sent"] == [{"type": "send", "room": "lobby", "body": "kept", "client_id": kept, "ref": kept}]


def test_a_subscribe_the_server_could_not_serve_is_tried_again_after_the_wait_it_asked_for():
    """An `unavailable` or `rate_limited` answer to the subscribe (its ref) subscribes again,
    after `retry_after` (1 s without one); a refusal of it does not: the page says why."""
    out = run("""
        stream.opened();
        stream.receive({ type: "error", code: "unavailable", detail: "Retry.", ref: "subscribe" });
        const first = fire();
        stream.receive({ type: "error", code: "rate_limited", retry_after: 3, ref: "subscribe" });
        const second = fire();
        stream.receive({ type: "error", code: "not_found", detail: "No such room.", ref: "subscribe" });
        const third = fire();
        stream.receive({ type: "error", code: "unavailable", ref: "another frame" });
        const fourth = fire();
        return [first, second, third, fourth];
    """)
    assert out["result"] == [[1000], [3000], [], []]
    assert subscribes(out["sent"]) == [SUBSCRIBE_FROM_3] * 3
    assert out["heard"].count(["event", "error"]) == 4  # the page still says why, each time


def test_a_subscribe_made_meanwhile_cancels_the_retry():
    out = run("""
        stream.opened();
        stream.receive({ type: "error", code: "unavailable", ref: "subscribe" });
        stream.opened();  // the socket came back first: subscribed from there
        const cancelled = fire();
        stream.receive({ type: "error", code: "unavailable", ref: "subscribe" });  // that one failed too
        const retried = fire();
        return [cancelled, retried];
    """)
    assert out["result"] == [[], [1000]]
    assert len(subscribes(out["sent"])) == 3  # the first, the one on reopening, the retry


def test_recovered_false_asks_the_page_to_reload_history():
    out = run("""
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 9000, rev: 5, recovered: false });
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 9000, rev: 5, recovered: true });
    """)
    assert out["heard"] == [["reload"], ["subscribed"], ["subscribed"]]


def test_history_loaded_over_http_moves_the_resubscribe_point():
    out = run("""
        stream.seen(40);
        stream.seen(12);  // never backwards
        stream.opened();
    """)
    assert subscribes(out["sent"]) == [{"type": "subscribe", "room": "lobby", "since": 40, "rev": None, "ref": REF}]


def test_after_kicked_it_never_resubscribes():
    out = run("""
        stream.opened();
        stream.receive({ type: "subscribed", room: "lobby", seq: 3, rev: null, recovered: true });
        stream.receive({ type: "kicked", room: "lobby", reason: "bye" });
        stream.receive(message(7));  // a gap would resubscribe
        stream.opened();
        return stream.isKicked();
    """)
    assert len(subscribes(out["sent"])) == 1
    assert out["result"] is True
    assert ["event", "kicked"] in out["heard"]


def test_a_message_written_gets_a_uuid7_client_id_of_the_moment_it_was_written():
    """The server answers a late retry of a UUIDv7 from the database (docs/protocol.md, retries)."""
    out = run("""
        const before = Date.now();
        const ids = [stream.post("one"), stream.post("two")];
        return { ids, before, after: Date.now() };
    """)
    result = out["result"]
    first, second = (uuid.UUID(client_id) for client_id in result["ids"])
    assert first.version == second.version == 7 and first.variant == uuid.RFC_4122 and first != second
    for client_id in result["ids"]:
        assert result["before"] <= round(client_id_time(client_id) * 1000) <= result["after"]
