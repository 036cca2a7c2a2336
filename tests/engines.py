"""Real Elasticsearch and OpenSearch servers for the tests.

Which engines: MATCH_TEST_ENGINES names them with their URLs (``es8=http://127.0.0.1:9281,
os2=http://127.0.0.1:9282``; .ci/run sets it). When it is unset, the session starts the default
engines itself with scripts/engines.py (Java and Maven needed) and stops them at its end; without
them the engine tests skip with the reason, or fail under MATCH_REQUIRE_SERVERS=1.

Fixtures (conftest.py imports them):
- ``engine_name``: "es8", "os2", ... Every test that uses ``engine_url`` runs once per engine
  (``pytest_generate_tests``); asked for dynamically (``request.getfixturevalue``) it is the first.
- ``engine_url``: the engine's base URL, e.g. ``http://127.0.0.1:9281``.
- ``engine_index``: a fresh random index name on that engine, deleted after the test.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "engines.py"
ENV_VAR = "MATCH_TEST_ENGINES"
INDEX_PREFIX = "match-test-"


def load_script() -> ModuleType:
    """scripts/engines.py as a module (scripts/ is not a package; one copy per process)."""
    name = "match_engines_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    return sys.modules[name]


def configured_engines() -> dict[str, str] | None:
    """MATCH_TEST_ENGINES as {name: url}, or None when unset."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    known = load_script().ENGINES
    engines: dict[str, str] = {}
    for item in value.split(","):
        name, sep, url = item.strip().partition("=")
        if not sep or name not in known or not url.startswith(("http://", "https://")):
            raise pytest.UsageError(
                f"{ENV_VAR}: {item!r} is not NAME=URL with NAME one of {', '.join(known)} "
                f"(e.g. {ENV_VAR}=es8=http://127.0.0.1:9281,os2=http://127.0.0.1:9282)"
            )
        engines[name] = url.rstrip("/")
    return engines


def engine_names() -> list[str]:
    configured = configured_engines()
    return list(configured) if configured is not None else list(load_script().DEFAULT_ENGINES)


def expected_engine(name: str) -> tuple[str, int]:
    """The distribution and major version an engine name stands for: es8 -> elasticsearch 8."""
    engine = load_script().ENGINES[name]
    return engine.product, engine.major


def engine_info(url: str) -> dict | None:
    """{"distribution", "number"} of the engine answering at `url`, or None."""
    return load_script().engine_info(url, timeout=10.0)


class EngineSession:
    """The engines of one pytest session: given by URL, or started here and stopped at the end."""

    def __init__(self) -> None:
        self.configured = configured_engines()
        self.urls: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self.started: list = []  # nodes this session launched, to stop at its end
        self._launched = False

    def url(self, name: str) -> str:
        if self.configured is not None:
            return self._configured_url(name)
        if not self._launched:
            self._start_defaults()
        if name not in self.urls:
            from conftest import skip_or_fail  # conftest imports this module: import when used

            skip_or_fail(self.failures.get(name, f"engine {name} was not started"))
        return self.urls[name]

    def _configured_url(self, name: str) -> str:
        assert self.configured is not None
        url = self.configured[name]
        if name not in self.urls:
            if engine_info(url) is None:
                from conftest import skip_or_fail

                skip_or_fail(f"{name} at {url} (from {ENV_VAR}) does not answer")
            self.urls[name] = url
        return url

    def _start_defaults(self) -> None:
        """Launch every engine this session tests at once, then wait: start-ups overlap."""
        script = load_script()
        self._launched = True
        launched = []
        for name in engine_names():
            node = script.default_node(script.ENGINES[name])
            why = script.missing_prerequisites(node.engine)
            if why is not None:
                self.failures[name] = (
                    f"cannot start {name} for the engine tests: {why}; "
                    f"or point {ENV_VAR} at running servers"
                )
                continue
            try:
                if script.read_pid(node) is None:  # one already running is reused, not stopped
                    script.launch(node)
                    self.started.append(node)
                launched.append(node)
            except script.EngineError as exc:
                self.failures[name] = f"cannot start {name}: {exc}"
        for node in launched:
            try:
                script.wait_ready(node, script.read_pid(node) or -1)
                self.urls[node.engine.name] = node.url
            except script.EngineError as exc:
                self.failures[node.engine.name] = f"{node.engine.name} did not start: {exc}"

    def close(self) -> None:
        script = load_script()
        for node in self.started:
            script.stop_node(node)


@pytest.fixture(scope="session")
def engine_session() -> Iterator[EngineSession]:
    session = EngineSession()
    yield session
    session.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that needs an engine once per engine, grouped per engine (session scope)."""
    if "engine_name" in metafunc.fixturenames:
        names = engine_names()
        metafunc.parametrize("engine_name", names, indirect=True, scope="session", ids=names)


@pytest.fixture(scope="session")
def engine_name(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", None) or engine_names()[0]


@pytest.fixture(scope="session")
def engine_url(engine_name: str, engine_session: EngineSession) -> str:
    return engine_session.url(engine_name)


@pytest.fixture
def engine_index(engine_url: str) -> Iterator[str]:
    """A fresh index name (nothing is created); it and any `<name>*` kin are deleted after."""
    name = f"{INDEX_PREFIX}{uuid.uuid4().hex[:12]}"
    yield name
    delete_indexes(engine_url, name)


def delete_indexes(url: str, name: str) -> None:
    """Delete `name` and indexes starting with it, one by one: wildcard deletes are refused by
    default (action.destructive_requires_name)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        listed = http.get(f"/_cat/indices/{name}*", params={"format": "json", "h": "index"})
        names = [row["index"] for row in listed.json()] if listed.status_code == 200 else []
        for index in sorted(set(names) | {name}):
            answer = http.delete(f"/{index}")
            if answer.status_code not in (200, 404):
                answer.raise_for_status()
