"""Tests that call ``chinwag.logs.configure`` put the process's logging back after."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from chinwag import logs


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Put back the root logger's handlers and level, and the levels ``configure`` sets."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    names = ["", "chinwag", *logs.QUIET_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
