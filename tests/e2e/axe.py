"""axe-core in the browser tests: the npm package (package.json, installed by `make install`)
evaluated into the page under test; never fetched from a CDN."""

from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES

AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_source() -> str:
    if not AXE_JS.exists():
        if REQUIRE_SERVICES:
            pytest.fail(f"{AXE_JS} is required (WEBCHAT_REQUIRE_SERVICES=1): run `make install`")
        pytest.skip("axe-core is not installed (npm ci)")
    return AXE_JS.read_text()


def axe_violations(page, source: str) -> list[str]:
    """The page's serious and critical WCAG 2.1 A/AA violations, one line each (empty: none).

    Evaluated through the DevTools protocol, which the page's Content-Security-Policy does not
    govern, so the page is checked with its real CSP in place.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    results = page.evaluate(
        """async () => {
          const r = await window.axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
          });
          return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            targets: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
        }"""
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['targets'])}"
        for v in results
        if v["impact"] in BLOCKING
    ]
