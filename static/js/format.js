// Message formatting in the browser: the grammar of messaging/formatting.py, written again
// (its docstring defines it; messaging/tests/formatting_cases.json holds the cases both
// implementations must render alike, and a test runs them through this file under Node).
// Text works on code points (Array.from), as Python's strings do. toDOM builds elements with
// textContent: no user text ever goes through innerHTML.
(function (root) {
  "use strict";

  const SPACES = new Set(Array.from(" \t\n\r\f\v\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"));
  const NOT_IN_LINK = new Set(["<", ">", '"', "'"]);
  const TRAILING = new Set(Array.from(".,;:!?)]}'\"*"));
  const FENCE_OPEN = /^```[A-Za-z0-9_+-]*[ \t]*$/;
  const FENCE_CLOSE = /^```[ \t]*$/;
  const MARKERS = { "**": "strong", __: "strong", "*": "strong", _: "em" };
  const MAX_DEPTH = 2;
  const LETTER_OR_NUMBER = /^[\p{L}\p{N}]$/u;

  function isWord(ch) {
    return ch === "_" || LETTER_OR_NUMBER.test(ch);
  }

  function asciiLower(ch) {
    return ch !== undefined && ch >= "A" && ch <= "Z" ? ch.toLowerCase() : ch;
  }

  // https?://[^spaces<>"']+ (ASCII letters in any case), less trailing punctuation.
  function linkAt(c, i) {
    if (i > 0 && isWord(c[i - 1])) return null;
    let k = i;
    for (const want of "http") {
      if (asciiLower(c[k]) !== want) return null;
      k += 1;
    }
    if (asciiLower(c[k]) === "s") k += 1;
    if (c[k] !== ":" || c[k + 1] !== "/" || c[k + 2] !== "/") return null;
    k += 3;
    const start = k;
    while (k < c.length && !SPACES.has(c[k]) && !NOT_IN_LINK.has(c[k])) k += 1;
    if (k === start) return null;
    while (TRAILING.has(c[k - 1])) k -= 1;
    return c.slice(i, k).join("");
  }

  function codeEnd(c, i) {
    const end = c.indexOf("`", i + 1);
    return end > i + 1 ? end : -1;
  }

  function startsWith(c, marker, k) {
    for (let n = 0; n < marker.length; n += 1) if (c[k + n] !== marker[n]) return false;
    return true;
  }

  function closer(c, i, marker, memo) {
    const ch = marker[0];
    const size = marker.length;
    let k = i + size + 1;
    let found = -1;
    const path = [];
    while (k < c.length) {
      if (memo.has(k)) {
        found = memo.get(k);
        break;
      }
      path.push(k);
      if (c[k] === "`" && codeEnd(c, k) > 0) {
        k = codeEnd(c, k) + 1;
        continue;
      }
      const url = c[k] === "h" || c[k] === "H" ? linkAt(c, k) : null;
      if (url) {
        k += Array.from(url).length;
        continue;
      }
      const after = k + size;
      if (startsWith(c, marker, k) && !SPACES.has(c[k - 1]) && c[k - 1] !== ch && (after === c.length || !(isWord(c[after]) || c[after] === ch))) {
        found = k;
        break;
      }
      k += 1;
    }
    for (const position of path) memo.set(position, found);
    return found;
  }

  function parseInline(c, depth) {
    const nodes = [];
    const memos = { "**": new Map(), __: new Map(), "*": new Map(), _: new Map() };
    let plainFrom = 0;
    let i = 0;
    const flush = (upto) => {
      if (upto > plainFrom) nodes.push(["text", c.slice(plainFrom, upto).join("")]);
    };
    while (i < c.length) {
      const ch = c[i];
      if (ch === "`") {
        const end = codeEnd(c, i);
        if (end > 0) {
          flush(i);
          nodes.push(["code", c.slice(i + 1, end).join("")]);
          i = plainFrom = end + 1;
          continue;
        }
      } else if (ch === "h" || ch === "H") {
        const url = linkAt(c, i);
        if (url) {
          flush(i);
          nodes.push(["link", url]);
          i = plainFrom = i + Array.from(url).length;
          continue;
        }
      } else if ((ch === "*" || ch === "_") && depth < MAX_DEPTH && (i === 0 || !(isWord(c[i - 1]) || c[i - 1] === ch))) {
        let end = -1;
        let marker = ch;
        for (const candidate of [ch + ch, ch]) {
          const size = candidate.length;
          const opens = startsWith(c, candidate, i) && i + size < c.length && !SPACES.has(c[i + size]) && c[i + size] !== ch;
          end = opens ? closer(c, i, candidate, memos[candidate]) : -1;
          marker = candidate;
          if (end > 0) break;
        }
        if (end > 0) {
          flush(i);
          nodes.push([MARKERS[marker], parseInline(c.slice(i + marker.length, end), depth + 1)]);
          i = plainFrom = end + marker.length;
          continue;
        }
      }
      i += 1;
    }
    flush(c.length);
    return nodes;
  }

  function inlineLines(lines) {
    const nodes = [];
    lines.forEach((line, n) => {
      if (n) nodes.push(["text", "\n"]);
      nodes.push(...parseInline(Array.from(line), 0));
    });
    return nodes;
  }

  const isQuote = (line) => line === ">" || line.startsWith("> ");

  function parse(body) {
    const lines = body.split("\n");
    const nodes = [];
    let text = [];
    const flush = () => {
      nodes.push(...inlineLines(text));
      text = [];
    };
    // The first closing fence after each line, built from the end (formatting.py: linear time).
    const nextClose = new Array(lines.length + 1).fill(-1);
    for (let k = lines.length - 1; k >= 0; k -= 1) nextClose[k] = FENCE_CLOSE.test(lines[k]) ? k : nextClose[k + 1];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (FENCE_OPEN.test(line)) {
        const end = nextClose[i + 1];
        if (end > 0) {
          flush();
          nodes.push(["pre", lines.slice(i + 1, end).join("\n")]);
          i = end + 1;
          continue;
        }
      }
      if (isQuote(line)) {
        flush();
        const quoted = [];
        while (i < lines.length && isQuote(lines[i])) {
          quoted.push(lines[i].slice(2));
          i += 1;
        }
        nodes.push(["blockquote", inlineLines(quoted)]);
        continue;
      }
      text.push(line);
      i += 1;
    }
    flush();
    return nodes;
  }

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;" };
  const escape = (text) => text.replace(/[&<>"']/g, (ch) => ESCAPES[ch]);

  // The HTML messaging/formatting.py writes (for the shared test cases).
  function toHTML(nodes) {
    return nodes.map(([kind, value]) => {
      if (kind === "text") return escape(value);
      if (kind === "code") return `<code>${escape(value)}</code>`;
      if (kind === "pre") return `<pre><code>${escape(value)}</code></pre>`;
      if (kind === "link") return `<a href="${escape(value)}" rel="noopener nofollow" target="_blank">${escape(value)}</a>`;
      return `<${kind}>${toHTML(value)}</${kind}>`;
    }).join("");
  }

  // The same as elements, for the page.
  function toDOM(nodes, doc) {
    const fragment = doc.createDocumentFragment();
    for (const [kind, value] of nodes) {
      if (kind === "text") {
        fragment.append(doc.createTextNode(value));
      } else if (kind === "code" || kind === "pre") {
        const code = doc.createElement("code");
        code.textContent = value;
        if (kind === "pre") {
          const pre = doc.createElement("pre");
          pre.append(code);
          fragment.append(pre);
        } else {
          fragment.append(code);
        }
      } else if (kind === "link") {
        const a = doc.createElement("a");
        a.setAttribute("href", value);
        a.setAttribute("rel", "noopener nofollow");
        a.setAttribute("target", "_blank");
        a.textContent = value;
        fragment.append(a);
      } else {
        const el = doc.createElement(kind);
        el.append(toDOM(value, doc));
        fragment.append(el);
      }
    }
    return fragment;
  }

  // A reply's quote of its original: how the message starts, on one line, cut at 100 code
  // points (protocol.wire.reply_excerpt, which the server's pages show). The spaces are
  // Python's str.split() spaces, not JavaScript's \s: both must cut the same text alike.
  const EXCERPT_CHARS = 100;
  const PY_SPACES = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
  function excerpt(body) {
    const line = body.split(PY_SPACES).filter(Boolean).join(" ");
    const chars = Array.from(line);
    return chars.length <= EXCERPT_CHARS ? line : `${chars.slice(0, EXCERPT_CHARS).join("")}\u2026`;
  }

  const api = {
    excerpt,
    parse,
    toHTML,
    toDOM,
    html: (body) => toHTML(parse(body)),
    fill(el, body) {
      el.replaceChildren(toDOM(parse(body), el.ownerDocument));
    },
  };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.PubSubFormat = api;
})(typeof window !== "undefined" ? window : globalThis);
