"""Logs on stdout, for the service and its access log: one JSON object per line (MATCH_LOG_FORMAT
json, the default) or plain text lines (text), at MATCH_LOG_LEVEL.

``log_config(level, format)`` is a ``logging.config.dictConfig`` dictionary; passed as
``uvicorn.run(log_config=...)``, every worker process applies it. The access log is written by
the metrics middleware (``match.http.metrics``) to the ``match.access`` logger, because it knows
the route and the duration; uvicorn's own access logger is silenced so that each request is
logged once.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

ACCESS_LOGGER = "match.access"

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
# uvicorn adds "color_message", the message with terminal colour codes: not for a log file.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """time, level, logger, pid, message, the ``extra=`` fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [pid] message``: the access line carries its reason in the message."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line = f"{time} {record.levelname.lower()} {record.name} [{record.process}] "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def log_config(level: str = "INFO", format: str = "json") -> dict[str, Any]:
    """Lines in ``format`` on stdout for the root, uvicorn and access loggers, at ``level``;
    uvicorn.access muted."""
    level = level.upper()
    formatter = FORMATTERS[format]
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"stdout": handler},
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            ACCESS_LOGGER: {"handlers": ["stdout"], "level": level, "propagate": False},
        },
    }
