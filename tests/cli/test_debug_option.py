"""``--debug``, before or after the command: a failure's traceback, which is otherwise
one line, whatever failed."""

from __future__ import annotations

import pytest

from chinwag import cli


def broken_command(*, args: list[str], prog_name: str) -> None:
    raise RuntimeError("the disk caught fire\nand more detail")


def test_an_unforeseen_failure_is_one_line_and_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(cli, "app", broken_command)
    monkeypatch.setattr("sys.argv", ["chinwag", "user", "list"])

    with pytest.raises(SystemExit) as exited:
        cli.main()

    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "error: RuntimeError: the disk caught fire (chinwag --debug ... shows where)\n"
    )


def test_with_debug_it_is_raised_for_python_to_print(monkeypatch):
    monkeypatch.setattr(cli, "app", broken_command)
    monkeypatch.setattr("sys.argv", ["chinwag", "user", "list", "--debug"])

    with pytest.raises(RuntimeError, match="the disk caught fire"):
        cli.main()


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (["user", "list"], ["user", "list"]),
        (["--debug", "serve"], ["--debug", "serve"]),
        (["serve", "-c", "x.toml", "--debug"], ["--debug", "serve", "-c", "x.toml"]),
        (["import", "--", "--debug"], ["import", "--", "--debug"]),
    ],
)
def test_debug_goes_before_the_command_wherever_it_is_given(given, parsed):
    assert cli._global_options_first(given) == parsed
