"""Formatting: one set of cases (formatting_cases.json), rendered alike by the server's
renderer (messaging/formatting.py) and the browser's (static/js/format.js, run under Node)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.template import Context, Template

from messaging.formatting import format_body

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((Path(__file__).with_name("formatting_cases.json")).read_text())
FORMAT_JS = ROOT / "static" / "js" / "format.js"
# Reads a JSON list of bodies on stdin, writes the list of their HTML.
HARNESS = """
const format = require(process.argv[1]);
const bodies = JSON.parse(require("fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(bodies.map((body) => format.html(body))));
"""


def js_render(bodies: list[str]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        # Not a skip: scripts/test-deps.sh installs nodejs; without it the client's renderer is untested.
        pytest.fail("no `node` on PATH: apt-get install nodejs")
    done = subprocess.run(
        [node, "-e", HARNESS, str(FORMAT_JS)],
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_python_renderer_gives_each_shared_case_its_html(case):
    assert format_body(case["input"]) == case["html"]


def test_the_js_renderer_gives_every_shared_case_the_same_html():
    rendered = js_render([case["input"] for case in CASES])
    different = [
        f"{case['name']}: {case['input']!r}\n  expected {case['html']!r}\n  got      {html!r}"
        for case, html in zip(CASES, rendered, strict=True)
        if html != case["html"]
    ]
    assert not different, "\n".join(different)


def test_the_cases_cover_what_must_never_become_html():
    inputs = " ".join(case["input"] for case in CASES)
    for needle in ("<script>", "onerror=", "javascript:", "```", "> ", "`*", "**", "\n"):
        assert needle in inputs
    for case in CASES:
        for tag in ("<script", "<img", '<a href="javascript', 'onerror="', "<b>"):
            assert tag not in case["html"], case["name"]


def test_both_renderers_stay_fast_on_hostile_input():
    bodies = ["*a " * 1333, "_" * 4000, "*_" * 2000, "`" * 4000, "https://" * 500, "> *x\n" * 600]
    started = time.perf_counter()
    python = [format_body(body) for body in bodies]
    assert time.perf_counter() - started < 1.0
    assert js_render(bodies) == python


def test_the_template_filter_renders_the_body_escaped_and_formatted():
    html = Template("{% load messaging_tags %}{{ body|format_body }}").render(
        Context({"body": "*hi* <script>x</script>"})
    )
    assert html == "<strong>hi</strong> &lt;script&gt;x&lt;/script&gt;"
