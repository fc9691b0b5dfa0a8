"""Message formatting: a small, safe subset of Markdown, and nothing else becomes markup.

The grammar, applied to the body as sent (the JS client, static/js/format.js, implements the
same, and messaging/tests/formatting_cases.json holds the cases both must render alike):

- Blocks, line by line. A line ```` ``` ```` (optionally followed by a language name) opens a
  fenced code block that a line ```` ``` ```` closes: what is between is shown as it is, in
  ``<pre><code>``; a fence nobody closes is plain text. Consecutive lines that start with
  ``> `` (or are ``>`` alone) are one ``<blockquote>``, without the marker. Every other line is
  text. Lines are joined with a newline (the page shows newlines), blocks without one.
- Inline, within one line, left to right: `` `code` `` (shown as it is), http(s) links (as
  before: up to a space, `<`, `>` or a quote, less trailing punctuation and ``*``), ``**bold**`` and
  ``__bold__`` (as people type them from Markdown and Discord), ``*bold*`` and ``_italic_``.
  An emphasis marker (one character, or the same character twice) opens at the start or after
  a character that is not a letter, digit, ``_`` or the marker's character, before one that is
  not a space nor the marker's character; it closes at the first such marker after a character
  that is not a space nor the marker's character, before the end or a character that is not a
  letter, digit, ``_`` or the marker's character, outside code and links. A doubled marker is
  tried first, then a single one. What it encloses is read again (code, links and emphasis,
  two levels deep at most). A marker that does not close is plain text.
- Linear time: every line is read once, each walk to a closing marker is remembered for the
  positions it passed, and each fence finds its closing line in a table built once.
- Every piece of text is escaped; the only elements are ``strong``, ``em``, ``code``, ``pre``,
  ``blockquote`` and ``a`` (``href`` an http(s) URL, ``rel="noopener nofollow"``,
  ``target="_blank"``).
"""

from __future__ import annotations

import re
import unicodedata

# What counts as a space, spelled out so that Python and JavaScript agree on it.
SPACES = (
    " \t\n\r\f\v\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_LINK = re.compile(r"https?://[^" + re.escape(SPACES) + r"<>\"']+", re.IGNORECASE | re.ASCII)
_TRAILING = ".,;:!?)]}'\"*"
_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*")
_FENCE_CLOSE = re.compile(r"```[ \t]*")
MARKERS = {"**": "strong", "__": "strong", "*": "strong", "_": "em"}
MAX_DEPTH = 2
# Where something may start: the walks below jump from one such character to the next.
_STARTS = "`hH"
_INTERESTING = re.compile(r"[`hH*_]")
_INTERESTING_FOR = {marker: re.compile("[`hH" + re.escape(marker[0]) + "]") for marker in MARKERS}

# A node: ("text", str), ("code", str), ("link", url), ("strong" | "em" | "blockquote", [nodes]),
# ("pre", str).
Node = tuple


def _is_word(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LN"


def _link_at(text: str, i: int) -> str | None:
    if i > 0 and _is_word(text[i - 1]):
        return None
    match = _LINK.match(text, i)
    return match.group(0).rstrip(_TRAILING) if match else None


def _code_end(text: str, i: int) -> int:
    """The index of the backtick closing the code span opened at ``i``, or -1."""
    end = text.find("`", i + 1)
    return end if end > i + 1 else -1


def _closer(text: str, i: int, marker: str, memo: dict[int, int]) -> int:
    """Where the emphasis ``marker`` opened at ``i`` closes, or -1. The walk from a position is
    always the same, so ``memo`` keeps where each walk ended: a line of 4,000 markers stays
    linear."""
    ch, size = marker[0], len(marker)
    interesting = _INTERESTING_FOR[marker]
    k, path, found = i + size + 1, [], -1
    while k < len(text):
        if text[k] not in _STARTS and text[k] != ch:
            jump = interesting.search(text, k)
            if jump is None:
                break
            k = jump.start()
        if k in memo:
            found = memo[k]
            break
        path.append(k)
        if text[k] == "`" and _code_end(text, k) > 0:
            k = _code_end(text, k) + 1
            continue
        url = _link_at(text, k) if text[k] in "hH" else None
        if url:
            k += len(url)
            continue
        after = k + size
        if (
            text.startswith(marker, k)
            and text[k - 1] not in SPACES
            and text[k - 1] != ch
            and (after == len(text) or not (_is_word(text[after]) or text[after] == ch))
        ):
            found = k
            break
        k += 1
    for position in path:
        memo[position] = found
    return found


def parse_inline(text: str, depth: int = 0) -> list[Node]:
    """One line's inline nodes; emphasis nests two deep at most (deeper markers are text)."""
    nodes: list[Node] = []
    memos: dict[str, dict[int, int]] = {marker: {} for marker in MARKERS}
    plain_from = 0
    i = 0

    def flush(upto: int) -> None:
        if upto > plain_from:
            nodes.append(("text", text[plain_from:upto]))

    while i < len(text):
        ch = text[i]
        if ch not in _STARTS and ch not in MARKERS:
            jump = _INTERESTING.search(text, i)
            if jump is None:
                break
            i = jump.start()
            ch = text[i]
        if ch == "`":
            end = _code_end(text, i)
            if end > 0:
                flush(i)
                nodes.append(("code", text[i + 1 : end]))
                i = plain_from = end + 1
                continue
        elif ch in "hH":
            url = _link_at(text, i)
            if url:
                flush(i)
                nodes.append(("link", url))
                i = plain_from = i + len(url)
                continue
        elif ch in MARKERS and depth < MAX_DEPTH and (i == 0 or not (_is_word(text[i - 1]) or text[i - 1] == ch)):
            for marker in (ch * 2, ch):
                size = len(marker)
                opens = (
                    text.startswith(marker, i)
                    and i + size < len(text)
                    and text[i + size] not in SPACES
                    and text[i + size] != ch
                )
                end = _closer(text, i, marker, memos[marker]) if opens else -1
                if end > 0:
                    break
            if end > 0:
                flush(i)
                nodes.append((MARKERS[marker], parse_inline(text[i + size : end], depth + 1)))
                i = plain_from = end + size
                continue
        i += 1
    flush(len(text))
    return nodes


def _lines(lines: list[str]) -> list[Node]:
    nodes: list[Node] = []
    for n, line in enumerate(lines):
        if n:
            nodes.append(("text", "\n"))
        nodes.extend(parse_inline(line))
    return nodes


def _is_quote(line: str) -> bool:
    return line == ">" or line.startswith("> ")


def parse(body: str) -> list[Node]:
    lines = body.split("\n")
    nodes: list[Node] = []
    text: list[str] = []

    def flush() -> None:
        nodes.extend(_lines(text))
        text.clear()

    # The first closing fence after each line, built from the end: finding a fence's close
    # is one look-up, not a walk to the end (a body of 2,000 unclosed fences stays linear).
    next_close = [-1] * (len(lines) + 1)
    for k in range(len(lines) - 1, -1, -1):
        next_close[k] = k if _FENCE_CLOSE.fullmatch(lines[k]) else next_close[k + 1]
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE_OPEN.fullmatch(line):
            end = next_close[i + 1]
            if end > 0:
                flush()
                nodes.append(("pre", "\n".join(lines[i + 1 : end])))
                i = end + 1
                continue
        if _is_quote(line):
            flush()
            quoted = []
            while i < len(lines) and _is_quote(lines[i]):
                quoted.append(lines[i][2:])
                i += 1
            nodes.append(("blockquote", _lines(quoted)))
            continue
        text.append(line)
        i += 1
    flush()
    return nodes


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def to_html(nodes: list[Node]) -> str:
    out = []
    for kind, value in nodes:
        if kind == "text":
            out.append(_escape(value))
        elif kind == "code":
            out.append(f"<code>{_escape(value)}</code>")
        elif kind == "pre":
            out.append(f"<pre><code>{_escape(value)}</code></pre>")
        elif kind == "link":
            url = _escape(value)
            out.append(f'<a href="{url}" rel="noopener nofollow" target="_blank">{url}</a>')
        else:  # strong, em, blockquote
            out.append(f"<{kind}>{to_html(value)}</{kind}>")
    return "".join(out)


def format_body(body: str) -> str:
    """The body as HTML: escaped text and the elements of the grammar above."""
    return to_html(parse(body))
