"""Request parameters: declared once per route, read from the query string or the form body.

A route declares its parameters as ``Param`` entries (name, type, help, required, default,
bounds). ``Params.read(request, params, max_upload_bytes)`` collects the query string and the
urlencoded or multipart form (read strictly by match.http.forms: text that is not UTF-8, or a
multipart body without its closing boundary, is a 400), or a JSON object body
(match.http.json_body; the body wins when both give a name), and ``params["limit"]`` then
returns the value parsed by its declared type, or its default. Any bad value raises
``BadParameter`` (400) naming the parameter; an upload over the cap raises ``TooLarge`` (413).
The same declarations produce the OpenAPI description, so docs and parsing cannot drift:
reading a parameter a route did not declare is a programming error (``KeyError``).
``unknown()`` names the parameters sent that the route does not declare.

Types: ``string``; ``integer`` and ``number`` with optional bounds; ``boolean`` (true/false/1/0
in any case); ``json`` (a JSON object); ``file`` (a multipart upload, returned as bytes).
An empty value counts as not given.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.datastructures import UploadFile
from starlette.requests import Request

from match.errors import BadParameter, TooLarge
from match.http import forms, json_body
from match.settings import parse_bool
from match.sizes import human_size

ParamType = Literal["string", "integer", "number", "boolean", "json", "file"]


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    help: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


Raw = str | Upload


class Params:
    def __init__(self, declared: Iterable[Param], values: dict[str, list[Raw]]) -> None:
        self.declared = {param.name: param for param in declared}
        self.values = values
        # the collections the request's API key may act on (None: any), set by the responder
        self.allowed_collections: frozenset[str] | None = None
        self.read_only: bool | None = None  # the request's key is read-only; None: no keys

    @classmethod
    async def read(
        cls, request: Request, declared: Iterable[Param], max_upload_bytes: int
    ) -> Params:
        """Collect the query string and form of ``request``; uploads are read into memory."""
        values: dict[str, list[Raw]] = {}
        for name, value in forms.query_items(request.scope["query_string"]):
            values.setdefault(name, []).append(value)
        if json_body.is_json(request):  # a JSON object of parameters (match.http.json_body)
            values.update(await json_body.json_values(request))
            return cls(declared, values)
        await json_body.refuse_unread_body(request)
        # Text fields are held in memory: each is capped like an upload (Starlette's error for a
        # larger one becomes a 413 in the endpoint wrapper).
        async with contextlib.aclosing(request.stream()) as stream:
            form = await forms.read_form(request.headers, stream, max_upload_bytes)
        try:
            from_form: dict[str, list[Raw]] = {}
            for name, item in form.multi_items():
                if isinstance(item, UploadFile):
                    item = await _read_upload(name, item, max_upload_bytes)
                from_form.setdefault(name, []).append(item)
        finally:
            await form.close()
        values.update(from_form)
        return cls(declared, values)

    # -- access -------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        param = self.declared[name]
        raw = self.raw(name)
        if raw is None:
            if param.required:
                raise BadParameter(f"Parameter '{name}' is required")
            return param.default
        return _PARSERS[param.type](param, raw)

    def given(self, name: str) -> bool:
        """Whether the client sent a non-empty value for ``name``."""
        return self.raw(name) is not None

    def raw(self, name: str) -> Raw | None:
        """The first non-empty value sent for ``name`` (undeclared names too), or None."""
        for value in self.values.get(name, ()):
            if isinstance(value, Upload) or value.strip():
                return value
        return None

    def names(self) -> list[str]:
        return list(self.values)

    def unknown(self) -> list[str]:
        """The parameter names sent that the route does not declare (misspelled, or another
        route's): reported as a warning in the envelope, never an error, so that clients which
        send extra fields (as dsys/match ignored them) keep working."""
        return [name for name in self.values if name not in self.declared]

    def exactly_one(self, names: Sequence[str]) -> str:
        """The one name in ``names`` the client gave; BadParameter if none or several."""
        given = [name for name in names if self.given(name)]
        if len(given) == 1:
            return given[0]
        choices = " or ".join(f"'{name}'" for name in names)
        if not given:
            raise BadParameter(f"Missing parameter: give {choices}")
        both = " and ".join(f"'{name}'" for name in given)
        raise BadParameter(f"Give only one of {choices}, not {both}")


async def _read_upload(name: str, upload: UploadFile, max_bytes: int) -> Upload:
    if upload.size is not None and upload.size > max_bytes:
        raise TooLarge(
            f"Parameter '{name}' is {human_size(upload.size)}, larger than the "
            f"{human_size(max_bytes)} upload limit (MATCH_MAX_UPLOAD_BYTES)"
        )
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(
            f"Parameter '{name}' is larger than the {human_size(max_bytes)} upload limit "
            "(MATCH_MAX_UPLOAD_BYTES)"
        )
    return Upload(upload.filename or "", data)


# -- parsers: one per declared type ------------------------------------------------------------
def _text(param: Param, raw: Raw) -> str:
    if isinstance(raw, Upload):
        raise BadParameter(f"Parameter '{param.name}' must be a text value, not a file upload")
    return raw


def _string(param: Param, raw: Raw) -> str:
    return _text(param, raw)


def _integer(param: Param, raw: Raw) -> int:
    text = _text(param, raw).strip()
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(f"Parameter '{param.name}' must be an integer, got {text!r}") from None
    return _bounded(param, value)


def _number(param: Param, raw: Raw) -> float:
    text = _text(param, raw).strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadParameter(f"Parameter '{param.name}' must be a number, got {text!r}")
    return _bounded(param, value)


def _bounded(param: Param, value: Any) -> Any:
    low, high = param.minimum, param.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            raise BadParameter(f"Parameter '{param.name}' must be at least {low:g}, got {value}")
        if low is None:
            raise BadParameter(f"Parameter '{param.name}' must be at most {high:g}, got {value}")
        raise BadParameter(
            f"Parameter '{param.name}' must be between {low:g} and {high:g}, got {value}"
        )
    return value


def _boolean(param: Param, raw: Raw) -> bool:
    text = _text(param, raw)
    try:
        return parse_bool(text)
    except ValueError:
        raise BadParameter(
            f"Parameter '{param.name}' must be true/false or 1/0, got {text!r}"
        ) from None


def _json_object(param: Param, raw: Raw) -> dict[str, Any]:
    text = _text(param, raw)
    try:
        value = json.loads(text)
    except ValueError as error:
        raise BadParameter(f"Parameter '{param.name}' is not valid JSON: {error}") from None
    except RecursionError:  # json.loads recurses once per level: "[[[[..." is a 500 otherwise
        raise BadParameter(f"Parameter '{param.name}' is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadParameter(
            f"Parameter '{param.name}' must be a JSON object ({{...}}), got {type(value).__name__}"
        )
    try:  # "\ud800" parses, but could never be sent back: every answer holding it would fail
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter(
            f"Parameter '{param.name}' holds an unpaired surrogate (\\ud800-\\udfff): not Unicode"
        ) from None
    except RecursionError:
        raise BadParameter(f"Parameter '{param.name}' is nested too deeply") from None
    return value


def _file(param: Param, raw: Raw) -> bytes:
    if not isinstance(raw, Upload):
        raise BadParameter(
            f"Parameter '{param.name}' must be an uploaded file "
            "(multipart/form-data with a filename)"
        )
    return raw.data


_PARSERS = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "json": _json_object,
    "file": _file,
}
