"""The log's two formats and its destination (``chinwag.logs``): fields as ``key=value``
or JSON keys, one line per event whatever a client sent, a file opened anew at each
``configure`` and a file that cannot be opened refused with nothing changed."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chinwag import logs
from chinwag.config import ConfigError, LogSettings, settings_from_mapping
from tests.log_support import restored_logging


def record(message: str, fields: dict[str, object] | None = None) -> logging.LogRecord:
    made = logging.LogRecord("chinwag.server.c2s", logging.INFO, __file__, 1, message, (), None)
    if fields is not None:
        made.fields = fields
    return made


@pytest.fixture
def restored() -> Iterator[None]:
    with restored_logging():
        yield


def test_text_gives_the_fields_as_key_value_after_the_message() -> None:
    line = logs.TextFormatter().format(
        record(
            "signed in",
            {"user": "alice", "resource": "my phone", "client_id": None, "address": "::1"},
        )
    )

    assert line.endswith(
        ' INFO chinwag.server.c2s: signed in user=alice resource="my phone" address=::1'
    )
    assert "client_id" not in line


def test_text_stays_one_line_whatever_a_client_sent() -> None:
    forged = "x\n2026-01-01 00:00:00,000 INFO chinwag: signed in user=admin"
    line = logs.TextFormatter().format(record("sign-in failed", {"user": forged, "empty": ""}))

    assert "\n" not in line
    assert 'user="x\\n2026-01-01' in line
    assert 'empty=""' in line


def test_json_is_one_object_with_the_fields_as_keys() -> None:
    line = logs.JsonFormatter().format(
        record("session ended", {"user": "bob", "reason": "kicked", "client_id": None})
    )

    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "INFO",
        "logger": "chinwag.server.c2s",
        "message": "session ended",
        "user": "bob",
        "reason": "kicked",
    }


def test_json_keeps_a_traceback_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("chinwag", logging.ERROR, __file__, 1, "it broke", (), None)
        failed.exc_info = sys.exc_info()

    line = logs.JsonFormatter().format(failed)

    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_a_file_is_appended_to_and_opened_anew_by_configure(tmp_path: Path, restored: None) -> None:
    path = tmp_path / "chinwag.log"
    path.write_text("kept\n")
    settings = LogSettings(file=str(path), format="json")
    logs.configure(settings)
    logging.getLogger("chinwag.test").info("first", extra={"fields": {"n": 1}})

    path.rename(tmp_path / "chinwag.log.1")  # as logrotate does, before a reload
    logs.configure(settings)
    logging.getLogger("chinwag.test").info("second")

    rotated = (tmp_path / "chinwag.log.1").read_text().splitlines()
    assert rotated[0] == "kept"
    assert json.loads(rotated[1])["n"] == 1
    assert [json.loads(line)["message"] for line in path.read_text().splitlines()] == ["second"]
    assert [h.get_name() for h in logging.getLogger().handlers].count(logs.HANDLER_NAME) == 1
    assert path.stat().st_mode & 0o777 == logs.LOG_FILE_MODE & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_level_is_chinwags_and_libraries_stay_at_info(tmp_path: Path, restored: None) -> None:
    path = tmp_path / "chinwag.log"
    logs.configure(LogSettings(file=str(path), level="debug"))
    logging.getLogger("chinwag.server.tcp").debug("chinwag's own detail")
    logging.getLogger("some.library").debug("a library's detail")

    text = path.read_text()
    assert "DEBUG chinwag.server.tcp: chinwag's own detail" in text
    assert "a library's detail" not in text


def test_a_log_file_that_cannot_be_opened_changes_nothing(tmp_path: Path, restored: None) -> None:
    path = tmp_path / "chinwag.log"
    logs.configure(LogSettings(file=str(path)))
    missing = tmp_path / "no-such-directory" / "chinwag.log"

    with pytest.raises(logs.LogFileError, match=r"cannot open the log file .*: No such file"):
        logs.configure(LogSettings(file=str(missing), level="error"))

    logging.getLogger("chinwag.test").info("still here")
    assert "still here" in path.read_text()


def test_log_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"'log\.format'"):
        settings_from_mapping({"log": {"format": "xml"}})
    with pytest.raises(ConfigError, match=r"'log\.file': must be a file's path"):
        settings_from_mapping({"log": {"file": " "}})
    assert settings_from_mapping({"log": {"file": "chinwag.log"}}).log.file == "chinwag.log"
