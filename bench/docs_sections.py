"""docs/benchmarks.md has three writers, each owning part of it between markers: ``make bench``
(``bench.report``) writes the whole file but keeps the hand-written analysis and the other two
sections, which ``make bench-search`` (``bench.search``) and ``make bench-scale``
(``bench.scale_report``) each put in place of their old one (or after the analysis), touching
nothing else.
"""

from __future__ import annotations

from pathlib import Path

ANALYSIS_START = "<!-- analysis: written by hand, kept by the next run -->"
ANALYSIS_END = "<!-- /analysis -->"


def kept_between(text: str, start: str, end: str) -> str:
    """The part of ``text`` from the marker ``start`` to the marker ``end`` (both kept), or ""."""
    at, until = text.find(start), text.find(end)
    if at < 0 or until < at:
        return ""
    return text[at : until + len(end)]


def write_section(path: Path, section: str, *, start: str, end: str, after: tuple[str, ...]) -> None:
    """Put ``section`` (marked by ``start`` and ``end``) into the report at ``path``: in place of
    the one there, or else after the first of the markers ``after`` found, or else at the end."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    old = kept_between(text, start, end)
    if old:
        text = text.replace(old, section)
    else:
        for anchor in after:
            at = text.find(anchor)
            if at >= 0:
                cut = at + len(anchor)
                text = text[:cut] + "\n\n" + section + text[cut:]
                break
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
