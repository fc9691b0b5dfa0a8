// One room's stream over the socket (docs/protocol.md): what the page has seen and what it
// still owes the server, with no DOM. It guarantees the page every message once and in seq
// order: a gap resubscribes with the last `since` and `rev` seen (the server replays the
// rest), an older or repeated seq is never appended twice, and a replay the server cut short
// (`recovered: false`) asks the page to reload its history. Messages written here wait
// (`pending`, by client_id) until their author's own broadcast or ack confirms them, and go
// out again, with the same client_id, after every resubscribe or a retryable error: they can
// never appear twice.
//
// The page (room.js) renders; it hears of events through the callbacks given to `create`:
//   onMessage(m)        a new message, the next in seq order (also our own, confirming it)
//   onMessageAgain(m)   a message already delivered, sent again (a replay): its state may be newer
//   onAck(clientId)     the server stored our message
//   onFailed(clientId)  our message was refused for good
//   onReloadHistory()   the replay was cut short: what the page shows may have holes
//   onSubscribed()      the subscription stands (and the pending messages went out again)
//   onEvent(frame)      every other frame of this room (edits, claps, presence, errors, …)
// Loaded as a plain script (window.PubSubRoomStream) and, for its unit test, by Node.
(function (root) {
  "use strict";

  // A client_id: a UUIDv7 (RFC 9562), the time it was made (Unix ms, 48 bits) and then 74
  // random bits. From its time the server knows a fresh message from a late retry: a retry made
  // after its message left Redis is answered from the database (docs/protocol.md, retries).
  function uuid7(now = Date.now()) {
    const b = root.crypto.getRandomValues(new Uint8Array(16));
    for (let i = 5, t = now; i >= 0; i--, t = Math.floor(t / 256)) b[i] = t % 256;
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // send(frame) -> bool puts a frame on the socket (false when it is not open).
  // `timers` (setTimeout/clearTimeout/random) are the browser's unless a test gives its own.
  function create({ room, userId, lastSeq = 0, send, timers = {}, ...on }) {
    const setTimer = timers.setTimeout || root.setTimeout.bind(root);
    const clearTimer = timers.clearTimeout || root.clearTimeout.bind(root);
    const random = timers.random || Math.random;
    const call = (name, ...args) => { if (on[name]) on[name](...args); };

    let seq = Number(lastSeq) || 0;
    let rev = null;
    // Subscribed on the current connection: until then new messages wait in `pending`
    // and go out after the ones before them, in the order they were written.
    let ready = false;
    let kicked = false;
    let retryTimer = null;
    const pending = new Map(); // client_id -> {body, replyTo}

    // The subscribe carries this ref, so that an error about it is known as one: a subscribe the
    // server could not serve then (`unavailable`: a backing service failed; `rate_limited`) is
    // tried again after the wait it asked for, where the page would otherwise stay connected and
    // never subscribed. A refusal (not_found, banned, forbidden, …) is left to the page.
    // (A constant: a ref has at most 64 characters and a slug up to 100; a page has one stream,
    // and a second one that heard of another's error would only subscribe again, which is harmless.)
    const subscribeRef = "subscribe";
    let subscribeTimer = null;

    function subscribe() {
      if (kicked) return; // the subscription ended for good; a reload shows why
      if (subscribeTimer !== null) clearTimer(subscribeTimer); // a retry that was waiting: this one is it
      subscribeTimer = null;
      send({ type: "subscribe", room, since: seq, rev, ref: subscribeRef });
    }

    function sendFrame(clientId, { body, replyTo, extra, attachments }) {
      const frame = { type: "send", room, body, client_id: clientId, ref: clientId };
      if (replyTo) frame.reply_to = replyTo;
      if (attachments && attachments.length) frame.attachments = attachments; // ids (static/js/room-uploads.js)
      if (extra) Object.assign(frame, extra); // a thread reply's `thread`, `also_in_room` (room-threads.js)
      return frame;
    }

    function resendPending() {
      for (const [clientId, message] of pending) send(sendFrame(clientId, message));
    }

    function receiveMessage(m) {
      if (m.seq <= seq) {
        call("onMessageAgain", m);
        return;
      }
      if (m.seq > seq + 1) {
        subscribe(); // a gap: resubscribing replays everything after `seq`
        return;
      }
      seq = m.seq;
      // Our own broadcast confirms our message. A client_id is its author's: another
      // user's message may carry the same one, and it is theirs, never our confirmation.
      if (m.author && m.author.id === userId) pending.delete(m.client_id);
      call("onMessage", m);
    }

    // "Not now": the frame may be sent again, after the wait the server asked for (1 s without
    // one) and up to half a second of jitter.
    const retryable = (frame) => frame.code === "unavailable" || frame.code === "rate_limited";
    const retryWait = (frame) => ((frame.retry_after || 1) * 1000) + random() * 500;

    function receiveError(frame) {
      if (frame.ref === subscribeRef && retryable(frame)) {
        if (subscribeTimer !== null) clearTimer(subscribeTimer);
        subscribeTimer = setTimer(() => { subscribeTimer = null; subscribe(); }, retryWait(frame));
      }
      if (frame.ref && pending.has(frame.ref)) {
        if (retryable(frame)) {
          // Kept pending: retried with the same client_id, so it can never appear twice.
          clearTimer(retryTimer);
          retryTimer = setTimer(resendPending, retryWait(frame));
        } else {
          pending.delete(frame.ref);
          call("onFailed", frame.ref);
        }
      }
      call("onEvent", frame); // the page says why
    }

    // A frame from the socket, already past the frames every page understands.
    function receive(frame) {
      if (frame.room !== undefined && frame.room !== room) return;
      if (typeof frame.rev === "number" && (rev === null || frame.rev > rev)) rev = frame.rev;
      switch (frame.type) {
        case "subscribed":
          ready = true;
          if (!frame.recovered) call("onReloadHistory");
          resendPending();
          call("onSubscribed");
          break;
        case "message":
          receiveMessage(frame);
          break;
        case "ack":
          pending.delete(frame.client_id);
          call("onAck", frame.client_id);
          break;
        case "error":
          receiveError(frame);
          break;
        case "kicked":
          kicked = true;
          call("onEvent", frame);
          break;
        default:
          call("onEvent", frame);
          break;
      }
    }

    return {
      receive,
      // The socket (re)opened: subscribe, from what the page already has.
      opened() {
        ready = false;
        subscribe();
      },
      // The socket's state (socket.js): anything but "connected" waits for the next `subscribed`.
      stateChanged(state) {
        if (state !== "connected") ready = false;
      },
      // A message written here: kept until confirmed, sent now if subscribed (else after the
      // resubscribe). Returns its client_id, which its pending copy on the page carries.
      post(body, replyTo = null, extra = null, attachments = null) {
        const clientId = uuid7();
        const message = { body, replyTo, extra, attachments };
        pending.set(clientId, message);
        if (ready) send(sendFrame(clientId, message));
        return clientId;
      },
      // Messages the page got otherwise (history over HTTP): the stream goes on after them.
      seen(upTo) {
        seq = Math.max(seq, Number(upTo) || 0);
      },
      lastSeq: () => seq,
      lastRev: () => rev,
      isPending: (clientId) => pending.has(clientId),
      isKicked: () => kicked,
    };
  }

  const api = { create, uuid7 };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.PubSubRoomStream = api;
})(typeof window !== "undefined" ? window : globalThis);
