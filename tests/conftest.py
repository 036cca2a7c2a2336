"""Shared test fixtures: where the real test images live, and how a test asks for a server.

Everything the tests read is in the repository: the photos in tests/photos/ (their sources and
licences in tests/photos/photos.json) and image-match's golden values in
tests/fixtures/image-match/. Nothing here reads ../shared, which only the benchmarks and the
accuracy harness use."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (a red CI means a change broke something);
# `make test-deep` searches freely with many more examples and keeps what it finds in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None, max_examples=200)
settings.register_profile("deep", max_examples=5000)
settings.load_profile(os.environ.get("MATCH_HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "image-match"
PHOTOS = ROOT / "tests" / "photos"


def servers_required() -> bool:
    """CI sets MATCH_REQUIRE_SERVERS=1: a missing server is then a failure, not a skip."""
    return os.environ.get("MATCH_REQUIRE_SERVERS", "") not in {"", "0", "false"}


def skip_or_fail(reason: str) -> None:
    if servers_required():
        pytest.fail(f"{reason} (MATCH_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def environment_unchanged() -> Iterator[None]:
    """Every test leaves os.environ as it found it: a variable left behind reaches every later
    test's servers and CLI processes (an exported ALL_ORIENTATIONS=false once did)."""
    before = dict(os.environ)
    yield
    changed = sorted(
        name
        for name in before.keys() | os.environ.keys()
        if before.get(name) != os.environ.get(name) and name != "PYTEST_CURRENT_TEST"
    )
    assert not changed, f"the test left environment variables changed: {changed}"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """image-match's golden values (golden.json) and the four images they are computed from."""
    return FIXTURES


def photo_records() -> list[dict]:
    """tests/photos/photos.json's records (file, source, licence, how it was made, tags), in the
    order of ``photo_paths``."""
    return json.loads((PHOTOS / "photos.json").read_text())["photos"]


@pytest.fixture(scope="session")
def photo_paths() -> list[Path]:
    """The repository's test photos, in tests/photos/photos.json's order, which never changes
    (new photos are appended): tests may pick ``photo_paths[k]`` for k < 24 as they like. The
    first 30 are real photos of many sizes and shapes; after them come photos that one test
    module owns or that have a property (see ``tagged_photos``)."""
    return [PHOTOS / item["file"] for item in photo_records()]


@pytest.fixture(scope="session")
def tagged_photos() -> dict[str, list[Path]]:
    """Photos by tag: ``tineye`` (stored only by test_api_tineye.py), ``white-beside-black``
    (drawings), ``flat``, ``grey`` (a one-channel JPEG), ``wide``, ``tall``, ``exif`` (stored
    turned, with an EXIF orientation tag)."""
    tags: dict[str, list[Path]] = {}
    for item in photo_records():
        for tag in item["tags"]:
            tags.setdefault(tag, []).append(PHOTOS / item["file"])
    return tags


# The API tests' servers (tests/api_server.py), shared by every tests/test_api*.py module.
from api_server import (  # noqa: E402, F401
    api,
    api_server,
    beyond_hardening_stores,
    images,
    store_env,
    strict,
)

# Real Elasticsearch/OpenSearch servers (tests/engines.py): engine_name, engine_url, engine_index;
# its pytest_generate_tests runs each test that needs an engine once per engine.
from engines import (  # noqa: E402, F401
    engine_index,
    engine_name,
    engine_session,
    engine_url,
    pytest_generate_tests,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect hardening-suite tests on store kinds beyond api_server.HARDENING_STORE_KINDS."""
    dropped = [item for item in items if beyond_hardening_stores(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not beyond_hardening_stores(item)]


# -- no silent skips: under MATCH_REQUIRE_SERVERS=1 (CI) every skip is a failure --------------
def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _skip_to_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and servers_required():
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = f"would skip: {reason} (MATCH_REQUIRE_SERVERS=1: every skip fails)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None] | pytest.TestReport:
    """Whatever skips a test (a fixture, ``pytest.skip``, ``pytest.importorskip``, a skip
    mark), under MATCH_REQUIRE_SERVERS=1 it fails instead: CI passes only if everything ran."""
    report: pytest.TestReport = yield
    _skip_to_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Iterator[None] | pytest.CollectReport:
    """The same for a whole module skipped while it is collected (a module-level importorskip)."""
    report: pytest.CollectReport = yield
    _skip_to_failure(report)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """Say how many tests skipped and why, grouped by reason, after -ra's list of every one and
    just above the final counts, where it is seen."""
    yield
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    if not skipped:
        return
    reasons = Counter(_skip_reason(report) for report in skipped)
    terminalreporter.write_sep("=", f"{len(skipped)} skipped, and why", yellow=True)
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:5d}  {reason}")
    terminalreporter.write_line(
        "MATCH_REQUIRE_SERVERS=1 (as CI sets it) turns every skip into a failure."
    )
