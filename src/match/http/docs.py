"""The /docs page: a self-contained HTML rendering of the OpenAPI description (no scripts, no
external assets), so it works offline and shows exactly what /openapi.json says."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
h2 { margin-top: 2.5rem; font-family: ui-monospace, monospace; }
.verb { display: inline-block; min-width: 4.5rem; padding: 0 .4rem; margin-right: .4rem;
        border-radius: 4px; background: #e8eef7; font-size: .8em; text-align: center; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd;
         vertical-align: top; }
code { font-family: ui-monospace, monospace; }
"""


def render_docs(spec: dict[str, Any]) -> str:
    info = spec["info"]
    sections = "".join(
        _path_section(path, operations) for path, operations in spec["paths"].items()
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>"
        f"<p>{escape(info['description'])} Parameters may be sent in the query string, an "
        "urlencoded form or a multipart form; files only in a multipart form. The machine-"
        'readable description is <a href="/openapi.json">/openapi.json</a>.</p>'
        f"{sections}</body></html>\n"
    )


def _path_section(path: str, operations: dict[str, Any]) -> str:
    verbs = "".join(f'<span class="verb">{escape(method.upper())}</span>' for method in operations)
    summaries = {operation["summary"]: verb for verb, operation in operations.items()}
    if len(summaries) == 1:
        described = f"<p>{escape(next(iter(summaries)))}</p>"
    else:  # one route, several jobs (GET /collections lists, DELETE drops one)
        described = "".join(
            f"<p><code>{escape(verb.upper())}</code> {escape(summary)}</p>"
            for summary, verb in summaries.items()
        )
    codes = {code for op in operations.values() for code in op["responses"] if code != "200"}
    statuses = ", ".join(sorted(codes))
    return (
        f'<section id="{escape(path.strip("/"))}"><h2>{verbs}{escape(path)}</h2>'
        f"{described}{_parameter_table(list(operations.values()))}"
        f"<p>Errors: {escape(statuses)}.</p></section>"
    )


def _parameter_table(operations: list[dict[str, Any]]) -> str:
    """One table for all methods of a path (a GET lists no form body; its POST may)."""
    merged: dict[str, tuple[str, str, bool, str, str]] = {}
    for operation in operations:
        for row in _parameters(operation):
            merged.setdefault(row[0], row)
    rows = list(merged.values())
    if not rows:
        return "<p>No parameters.</p>"
    body = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(kind)}</td>"
        f"<td>{'yes' if required else ''}</td><td>{escape(default)}</td>"
        f"<td>{escape(text)}</td></tr>"
        for name, kind, required, default, text in rows
    )
    return (
        "<table><tr><th>parameter</th><th>type</th><th>required</th><th>default</th>"
        f"<th>description</th></tr>{body}</table>"
    )


def _parameters(operation: dict[str, Any]) -> list[tuple[str, str, bool, str, str]]:
    """(name, type, required, default, description) of every parameter, form fields included."""
    rows: dict[str, tuple[str, str, bool, str, str]] = {}
    for param in operation["parameters"]:
        rows[param["name"]] = _row(
            param["name"], param["schema"], param["required"], param["description"]
        )
    content = operation.get("requestBody", {}).get("content", {})
    for media in content.values():
        schema = media["schema"]
        for name, field in schema["properties"].items():
            required = name in schema.get("required", ())
            rows.setdefault(name, _row(name, field, required, field.get("description", "")))
    return list(rows.values())


def _row(
    name: str, schema: dict[str, Any], required: bool, text: str
) -> tuple[str, str, bool, str, str]:
    kind = "file" if schema.get("format") == "binary" else schema["type"]
    if schema.get("contentMediaType") == "application/json":
        kind = "JSON object"
    bounds = [
        f"≥ {schema['minimum']}" if "minimum" in schema else "",
        f"≤ {schema['maximum']}" if "maximum" in schema else "",
    ]
    kind = " ".join([kind, *filter(None, bounds)])
    default = schema.get("default")
    shown = (
        ""
        if default is None
        else str(default).lower()
        if isinstance(default, bool)
        else str(default)
    )
    return name, kind, required, shown, text
