"""The search benchmark's section of docs/benchmarks.md: written in place, kept by a full run."""

from __future__ import annotations

from bench import report
from bench.search import SECTION_END, SECTION_START, write_docs


def section(text: str) -> str:
    return f"{SECTION_START}\n## Search\n\n{text}\n{SECTION_END}"


def test_the_search_section_goes_after_the_analysis_and_is_replaced_in_place(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n{report.ANALYSIS_START}\nhand\n{report.ANALYSIS_END}\n\n## Detail\n")
    write_docs(docs, section("p95 31 ms"))
    first = docs.read_text()
    assert first.index(report.ANALYSIS_END) < first.index(SECTION_START) < first.index("## Detail")

    write_docs(docs, section("p95 29 ms"))
    second = docs.read_text()
    assert "p95 29 ms" in second and "p95 31 ms" not in second
    assert second.count(SECTION_START) == 1


def test_a_full_bench_run_keeps_the_search_section(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nold figures\n\n" + section("p95 31 ms") + "\n")
    assert report.kept_search(docs) == section("p95 31 ms")
    assert report.kept_search(tmp_path / "missing.md") == ""
