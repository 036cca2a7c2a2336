"""A fresh clone tests itself: the repository (this checkout's committed HEAD) is cloned into a
temporary folder with nothing beside it, and a smoke subset of the suite runs there on the
clone's own sources and files, under MATCH_REQUIRE_SERVERS=1, with MATCH_SHARED_DIR pointing to a
folder that does not exist. A test that reads ../shared, or a test file left out of git (a photo
never committed), fails here instead of passing on a developer's machine only.

It tests what is committed: uncommitted changes of this checkout are not in the clone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

# The golden signatures, the test data's own checks, a store test and an HTTP API test on the
# embedded store: a few seconds beside the clone itself.
SMOKE = (
    "tests/test_signature.py::test_signatures_equal_golden",
    "tests/test_photos.py",
    "tests/test_store_sqlite.py::TestSQLiteStore::test_add_then_get_returns_the_record",
    "tests/test_api.py::test_add_then_search_finds_it_first_with_its_metadata[embedded]",
)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    folder = tmp_path_factory.mktemp("fresh") / "match"
    subprocess.run(
        [git, "clone", "--quiet", "--no-hardlinks", str(ROOT), str(folder)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return folder


def clone_env(clone: Path) -> dict[str, str]:
    """This process's environment without Match's settings, the clone's sources first, and
    MATCH_SHARED_DIR pointing nowhere."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MATCH_", "PYTEST_", "ELASTICSEARCH_"))
    }
    return kept | {
        "PYTHONPATH": str(clone / "src"),
        "MATCH_SHARED_DIR": str(clone.parent / "no-shared-here"),
        "MATCH_REQUIRE_SERVERS": "1",
    }


def test_the_clone_has_nothing_beside_it_and_imports_its_own_sources(clone: Path) -> None:
    assert [path.name for path in clone.parent.iterdir()] == [clone.name]
    done = subprocess.run(
        [sys.executable, "-c", "import match; print(match.__file__)"],
        cwd=clone,
        env=clone_env(clone),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()).is_relative_to(clone / "src")


def test_a_fresh_clone_passes_its_smoke_tests_without_shared(clone: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SMOKE],
        cwd=clone,
        env=clone_env(clone),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= len(SMOKE) + 3, summary
    assert not re.search(r"skipped|failed|error", summary), summary
