"""Reading a request's query string and form body strictly: text must be valid UTF-8 and a
multipart body must end with its closing boundary.

Starlette's own parsers are lenient where Match must not be: a text value that is not valid
UTF-8 becomes Latin-1 (multipart) or U+FFFD (query string, urlencoded), so ``\\xff\\xfe`` was
stored as a different filepath than the one sent; and a multipart body cut short before its
closing boundary ``--<boundary>--`` is parsed without error, dropping the part in progress (an
add then stored the image without the ``metadata`` that followed it). Here each of those is a
``BadParameter`` (400) naming the parameter, or the body, before any handler runs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from urllib.parse import unquote_to_bytes

from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import (
    FormParser,
    MultiPartException,
    MultiPartParser,
    parse_options_header,
)

from match.errors import BadParameter
from match.http.limits import IncompleteBody


def query_items(query_string: bytes) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of a raw query string, decoded strictly (``+`` is a space)."""
    return [_pair(field) for field in query_string.split(b"&") if field]


def _pair(field: bytes) -> tuple[str, str]:
    raw_name, _, raw_value = field.partition(b"=")
    name = _decoded(raw_name, "A parameter name")
    return name, _decoded(raw_value, f"Parameter '{name}'")


def _decoded(raw: bytes, what: str, charset: str = "utf-8") -> str:
    data = unquote_to_bytes(raw.replace(b"+", b" "))
    return _text(data, what, charset)


def _text(data: bytes | bytearray, what: str, charset: str = "utf-8") -> str:
    try:
        return bytes(data).decode(charset)
    except UnicodeDecodeError as error:
        shown = bytes(data[error.start : error.end]).hex(" ")
        raise BadParameter(
            f"{what} is not valid {charset.upper()}: byte(s) {shown} at offset {error.start}"
        ) from None


class StrictFormParser(FormParser):
    """application/x-www-form-urlencoded, with names and values decoded strictly."""

    def on_field_end(self) -> None:
        self._current_fields += 1
        if self._current_fields > self.max_fields:
            raise MultiPartException(f"Too many fields: at most {self.max_fields}")
        name = _decoded(bytes(self._field_name), "A form field name")
        self._items.append((name, _decoded(bytes(self._field_value), f"Parameter '{name}'")))


class StrictMultiPartParser(MultiPartParser):
    """multipart/form-data, with text parts decoded strictly and the closing boundary required."""

    def __init__(
        self, headers: Headers, stream: AsyncGenerator[bytes, None], **limits: int
    ) -> None:
        super().__init__(headers, stream, **limits)
        self.ended = False

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        # Starlette decoded the name leniently: decode it again, strictly, from the header
        raw = _disposition_name(self._current_part.content_disposition)
        if raw is not None:
            self._current_part.field_name = _text(raw, "A multipart field name", self._charset)

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            name = part.field_name
            self.items.append((name, _text(part.data, f"Parameter '{name}'", self._charset)))
        else:
            super().on_part_end()

    def on_end(self) -> None:
        self.ended = True

    async def parse(self) -> FormData:
        form = await super().parse()
        if not self.ended:
            await form.close()
            raise IncompleteBody(
                "The multipart body ended without its closing boundary (--<boundary>--): "
                "it was cut short, so nothing was done"
            )
        return form


def _disposition_name(disposition: bytes | None) -> bytes | None:
    _, options = parse_options_header(disposition)
    return options.get(b"name")


async def read_form(
    headers: Headers, stream: AsyncGenerator[bytes, None], max_part_size: int
) -> FormData:
    """The form of a multipart or urlencoded body (an empty form for any other type). A form
    Starlette finds malformed raises its HTTPException(400), as ``Request.form`` would."""
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if kind == "multipart/form-data":
            return await StrictMultiPartParser(headers, stream, max_part_size=max_part_size).parse()
        if kind == "application/x-www-form-urlencoded":
            return await StrictFormParser(headers, stream, max_part_size=max_part_size).parse()
    except MultiPartException as error:
        raise HTTPException(status_code=400, detail=error.message) from None
    return FormData()
