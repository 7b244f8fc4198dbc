"""Where the log of ``chinwag serve`` goes and how its lines read (``[log]`` settings).

Every line is one event: as text, the time, level, logger and message, then the
event's fields as ``key=value`` (quoted when they hold spaces); as JSON lines, one
object with ``time``, ``level``, ``logger``, ``message`` and the same fields as keys.
A call gives its fields with ``extra={"fields": {...}}``; those that are None are
left out. Line breaks in what a client sent are escaped, so a line stays one line.

The destination is standard error or a file opened for appending. A reload opens the
file again (logrotate moves it, then reloads), and takes a new level or format.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chinwag.config import LogSettings

FIELDS = "fields"
"""The attribute of a log record that holds its event's fields (``extra={FIELDS: ...}``)."""
HANDLER_NAME = "chinwag"
"""The name of the handler chinwag puts on the root logger, to find it at a reload."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_MODE = 0o640
"""A log file chinwag creates: its lines name users and their addresses, so others may
not read it (its group may: an operators' group such as ``adm``)."""
QUIET_LOGGERS = ("alembic", "uvicorn.error")
"""Libraries that only speak up when something is wrong, so that chinwag's own first
lines say where it listens."""


class LogFileError(Exception):
    """The log file cannot be opened; the message names it and says why."""


class TextFormatter(logging.Formatter):
    """One readable line: ``time LEVEL logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = [f"{key}={_text_value(value)}" for key, value in event_fields(record).items()]
        if pairs:
            line = f"{line} {' '.join(pairs)}"
        return _one_line(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback, if any, is its ``exception`` key."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in event_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call gave its event, without those that are None."""
    given = getattr(record, FIELDS, None)
    if not isinstance(given, dict):
        return {}
    return {key: value for key, value in given.items() if value is not None}


def _text_value(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def configure(settings: LogSettings) -> None:
    """Send the process's log where ``settings`` say, in their format; raises
    LogFileError, changing nothing, if the file cannot be opened."""
    install(open_handler(settings), settings)


def open_handler(settings: LogSettings) -> logging.Handler:
    """The handler for ``settings``, its file opened; raises LogFileError."""
    handler: logging.Handler
    if settings.file is None:
        handler = logging.StreamHandler()
    else:
        path = Path(settings.file)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_FILE_MODE))
            handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        except OSError as error:
            reason = error.strerror or str(error)
            raise LogFileError(f"cannot open the log file {path}: {reason}") from None
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    return handler


def install(handler: logging.Handler, settings: LogSettings) -> None:
    """Make ``handler`` the process's log handler in place of a former one (which is
    closed): chinwag's loggers from ``settings.level``, the libraries' from INFO."""
    root = logging.getLogger()
    former = [each for each in root.handlers if each.get_name() == HANDLER_NAME]
    root.addHandler(handler)
    for each in former:
        root.removeHandler(each)
        each.close()
    root.setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    apply_level(settings)


def configured() -> bool:
    """Whether :func:`configure` installed the process's log handler (``chinwag serve``
    does; a program that embeds chinwag keeps its own logging)."""
    return any(each.get_name() == HANDLER_NAME for each in logging.getLogger().handlers)


def apply_level(settings: LogSettings) -> None:
    """chinwag's own loggers write lines of ``settings.level`` and above."""
    logging.getLogger("chinwag").setLevel(settings.level.upper())
