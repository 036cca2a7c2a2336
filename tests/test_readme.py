"""The README stays true to the code: every route, CLI command and setting is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from match.cli import _parser
from match.http import api, tineye, web
from match.settings import SETTINGS

README_PATH = Path(__file__).resolve().parent.parent / "README.md"
README = README_PATH.read_text()


def section(title: str) -> str:
    return README.split(f"\n## {title}\n")[1].split("\n## ")[0]


def test_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:30])
    assert "make serve" in first_screen and "make test" in first_screen


def test_every_dsys_route_is_in_the_api_section() -> None:
    text = section("HTTP API")
    # route cells such as `POST /add` or `GET\|POST /count` (a table cell escapes its |)
    cells = re.findall(r"`([A-Z|\\]+) (/[^` ]*)`", text)
    documented = {(m, path) for methods, path in cells for m in methods.split("\\|")}
    for endpoint in (*api.ENDPOINTS, *web.ENDPOINTS):
        for method in endpoint.methods:
            assert (method, endpoint.path) in documented, f"{method} {endpoint.path}"
        for param in endpoint.params:
            assert f"`{param.name}`" in text, f"{endpoint.path}: {param.name}"


def test_the_tineye_methods_are_named() -> None:
    text = section("HTTP API")
    for endpoint in tineye.ENDPOINTS:
        assert endpoint.name in text, endpoint.path


def test_every_cli_command_is_in_the_command_line_section() -> None:
    text = section("Command line")
    commands = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"`match {name}" in text, name


def test_every_setting_is_in_the_settings_section() -> None:
    text = section("Settings")
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text, setting.name


def test_the_cli_figures_are_the_benchmarks() -> None:
    """The README's `match add` rates are those bench/cli.py measured and wrote."""
    import json
    import re

    results = json.loads((README_PATH.parent / "bench" / "results" / "cli.json").read_text())
    text = " ".join(section("Command line").split())
    quoted = dict(
        (mode, float(rate))
        for rate, mode in re.findall(r"(\d+(?:\.\d+)?) img/s (with|without) partial", text)
    )
    assert quoted == {
        "with": results["partial"]["img_per_s"],
        "without": results["signature"]["img_per_s"],
    }
