"""The accessibility audit: axe-core (tests/browser/package.json, installed by `npm ci` into
tests/browser/node_modules, never served by the site) run inside a page by Playwright.

The script goes in through the DevTools protocol (`page.evaluate`), not a <script> tag: the
site's CSP refuses inline scripts, and the audit must not need the CSP loosened."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
from playwright.sync_api import Page

HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
# What fails the audit; "moderate" and "minor" findings are printed, not failed.
FAILING = ("serious", "critical")
# WCAG 2.x A and AA, and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@cache
def axe_source() -> str:
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            # Not a skip: scripts/test-deps.sh installs npm; without it the audit has not run.
            pytest.fail("no `npm` on PATH to install axe-core: apt-get install npm")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=300)
    return AXE.read_text()


def audit(page: Page) -> list[dict]:
    """axe's violations on the page as it is now (WCAG 2.x A and AA, and axe's best practices)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    return page.evaluate(
        """async (TAGS) => {
            const result = await axe.run(document, {
                runOnly: { type: "tag", values: TAGS },
                resultTypes: ["violations"],
            });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary.replace(/\\s+/g, " ")}`),
            }));
        }""",
        TAGS,
    )


def report(where: str, violations: list[dict]) -> str:
    """One line per violation and one per element, for the test output."""
    if not violations:
        return f"axe {where}: no violations"
    lines = [f"axe {where}: {len(violations)} violation(s)"]
    for v in violations:
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']}")
        lines.extend(f"      {node}" for node in v["nodes"][:5])
    return "\n".join(lines)


def failing(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in FAILING]
