"""SQLiteStore: the Store contract, plus what only the embedded store promises."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from match.stores.sqlite import SQLiteStore
from store_contract import StoreContract


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "data") as opened:
        yield opened


class TestSQLiteStore(StoreContract):
    pass
