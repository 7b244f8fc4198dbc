"""sd_notify: one datagram to the socket systemd names, nothing without one."""

from __future__ import annotations

import os
import socket
import time

import pytest

from chinwag.server import sd_notify


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify"))
    receiver.settimeout(5)
    monkeypatch.setenv(sd_notify.NOTIFY_SOCKET, str(tmp_path / "notify"))
    yield receiver
    receiver.close()


def test_assignments_go_in_one_datagram(systemd):
    assert sd_notify.notify("READY=1", "STATUS=serving chat.example")

    assert systemd.recv(4096) == b"READY=1\nSTATUS=serving chat.example"


def test_reloading_says_when_on_the_monotonic_clock(systemd):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    assert sd_notify.reloading()

    reloading, when = systemd.recv(4096).decode().splitlines()
    assert reloading == "RELOADING=1"
    assert before <= int(when.removeprefix("MONOTONIC_USEC=")) <= before + 5_000_000


def test_an_abstract_socket_is_named_with_an_at_sign(monkeypatch):
    name = f"chinwag-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        monkeypatch.setenv(sd_notify.NOTIFY_SOCKET, "@" + name)

        assert sd_notify.notify("STOPPING=1")
        assert receiver.recv(4096) == b"STOPPING=1"


def test_without_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv(sd_notify.NOTIFY_SOCKET, raising=False)

    assert not sd_notify.notify("READY=1")


def test_a_socket_that_is_gone_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(sd_notify.NOTIFY_SOCKET, str(tmp_path / "gone"))

    assert not sd_notify.notify("READY=1")
    assert "cannot notify systemd at" in caplog.text
