"""The operator's controls of a running chinwag: its status, ending sessions,
reloading its settings and draining it. The admin endpoints (``web/admin_routes.py``)
serve them to ``chinwag status``, ``chinwag sessions kick``, ``chinwag reload`` and
``chinwag drain``; SIGHUP reloads too, and SIGUSR1 drains (or, with no other node to
send the clients to, stops).

A reload reads the settings file again and applies what can change while connections
stay open: the TLS certificate and key (new handshakes get them, connections made
before keep theirs), ``[limits]`` (streams opened from then on get them; the
per-address sign-in limit and the keepalive and ping intervals change at once) and
``[log]`` (its file is opened again, for logrotate). It applies all of that or
nothing: a settings file, certificate or log file that does not load leaves
everything as it was. Other settings change at a restart only;
the answer names those that differ from the ones in force.

A drain stops accepting client streams, sends every client to another node with
<see-other-host/>, waits for the streams and sessions to end (``timeout`` seconds at
most) and stops the process. The other node is the one given, or, in a cluster, a live
node that advertises its address in Redis (``[cluster] advertise``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from sqlalchemy import text

from chinwag import __version__, logs
from chinwag.config import ConfigError, Settings, other_host
from chinwag.server import sd_notify
from chinwag.server.sessions import EndReason
from chinwag.server.tls import CertificateError, ServerTLS, certificate_names, loaded_context
from chinwag.server.xmpp_server import XMPPServer
from chinwag.store.db import Database, redacted
from chinwag.web.admin_routes import DEFAULT_DRAIN_SECONDS, DrainFailed, ReloadFailed
from chinwag.web.server import HTTPServer
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.jid import JID, InvalidJID

if TYPE_CHECKING:
    from chinwag.cluster.advertised import Advertisements

log = logging.getLogger("chinwag")

KICKED = "ended by the server's operator"
"""The text of the stream error that ends a session the operator ends, unless given one."""
RELOADED = ("tls", "limits", "log")
"""The sections of the settings that a reload applies."""
DATABASE_TIMEOUT_SECONDS = 5.0


@dataclass
class Control:
    """What the operator does to one running chinwag (an ``admin_routes.ServerControl``)."""

    settings: Settings
    """The settings in force: those of the start, with the sections reloaded since."""
    database: Database
    xmpp: XMPPServer
    reread: Callable[[], Settings] | None = None
    """Reads the settings file again; None keeps the settings (a reload then reloads the
    certificate files only)."""
    tls: ServerTLS | None = None
    http: HTTPServer | None = None
    stop: Callable[[], None] | None = None
    """Stops the process once a drain is done; None: the process stays (a test's)."""
    draining: asyncio.Task[None] | None = field(default=None, init=False)
    _advertised: Advertisements | None = field(default=None, init=False)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC), init=False)
    _started: float = field(default_factory=time.monotonic, init=False)

    # --- status ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        sessions = self.xmpp.sessions.all()
        transports = Counter(session.transport_kind for session in sessions)
        return {
            "version": __version__,
            "domain": self.xmpp.domain,
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "uptime_seconds": round(time.monotonic() - self._started),
            "sessions": len(sessions),
            "sessions_by_transport": dict(sorted(transports.items())),
            "streams": len(self.xmpp.connections),
            "listeners": self._listeners(),
            "database": await self._database(),
        }

    def _listeners(self) -> list[dict[str, Any]]:
        c2s_host = self.settings.c2s.host
        listeners = [
            {"name": role, "host": c2s_host, "port": port} for role, port in self.xmpp.ports.items()
        ]
        if self.http is not None:
            listeners.append(
                {"name": "http", "host": self.settings.http.host, "port": self.http.port}
            )
        return listeners

    async def _database(self) -> dict[str, Any]:
        url = redacted(self.settings.database_url)
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
                async with self.database.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except TimeoutError:
            problem = f"no answer within {DATABASE_TIMEOUT_SECONDS:g} s"
        except Exception as error:  # whatever the driver raises is the answer, not a crash
            problem = (
                str(getattr(error, "orig", None) or error) or type(error).__name__
            ).splitlines()[0]
        else:
            return {"url": url, "reachable": True}
        return {"url": url, "reachable": False, "error": problem}

    # --- sessions ----------------------------------------------------------------------

    def kick(self, jid: str, reason: str | None) -> list[str]:
        """End the session of a full JID, or every session of a bare one (and the
        account's streams signed in but not bound yet), with ``<policy-violation/>`` as
        ejabberd's kick does; the client may sign in again."""
        try:
            address = JID.parse(jid)
        except InvalidJID as invalid:
            raise ValueError(f"{jid} is not a JID: {invalid}") from None
        if address.local is None or address.domain != self.xmpp.domain:
            raise ValueError(f"{jid} is not the address of a user of {self.xmpp.domain}")
        error = StreamError(StreamCondition.POLICY_VIOLATION, reason or KICKED)
        sessions = self.xmpp.sessions
        if address.resource is not None:
            found = sessions.get(address)
            ending, unbound = ([] if found is None else [found]), []
        else:
            user = address.local
            ending = list(sessions.of(user))
            unbound = [
                connection
                for connection in self.xmpp.unbound
                if connection.grant is not None and connection.grant.username == user
            ]
        for session in ending:
            sessions.end(session, error, reason=EndReason.KICKED)
        for connection in unbound:
            connection.close_stream(error)
        ended = [str(session.jid) for session in ending]
        if ended:
            log.info("the operator ended the sessions of %s", ", ".join(ended))
        return ended

    # --- drain -------------------------------------------------------------------------

    async def drain(self, to: str | None, timeout: float = DEFAULT_DRAIN_SECONDS) -> dict[str, Any]:
        """Send every client to ``to`` (``host:port``; None: a live node that advertises
        one) and stop once they have gone. ValueError: ``to`` is not ``host:port``;
        DrainFailed: no other node to send them to, or a drain under way."""
        if self.draining is not None:
            raise DrainFailed("this server is already being drained")
        target = other_host(to) if to is not None else await self._live_peer()
        await self._withdraw()
        sent = self.xmpp.drain(target)
        self.draining = asyncio.create_task(self._stop_when_drained(timeout))
        return {"to": target, "sent": sent, "timeout_seconds": timeout, "pid": os.getpid()}

    def drain_on_signal(self) -> None:
        """SIGUSR1: drain to a live node of the cluster; without one (the last node, or
        no [cluster]), stop as on SIGTERM."""

        async def drain() -> None:
            try:
                await self.drain(None)
            except DrainFailed as error:
                if self.draining is None:  # else a drain is under way: let it finish
                    log.warning("not drained: %s; stopping", error)
                    if self.stop is not None:
                        self.stop()

        self.xmpp.spawn(drain())

    async def _stop_when_drained(self, timeout: float) -> None:
        if await self.xmpp.drained(timeout):
            log.info("drained: every stream and session has ended")
        else:
            log.warning(
                "drained for %g s; stopping with %d sessions left",
                timeout,
                len(self.xmpp.sessions.all()),
            )
        if self.stop is not None:
            self.stop()

    async def _live_peer(self) -> str:
        advertisements = self._advertisements()
        if advertisements is None:
            raise DrainFailed(
                "give the address to send the clients to (--to HOST:PORT): "
                "without [cluster] there is no other node to ask for"
            )
        from chinwag.cluster.advertised import PeersUnknown

        try:
            peers = await advertisements.live_peers()
        except PeersUnknown as error:
            raise DrainFailed(str(error)) from None
        if not peers:
            raise DrainFailed(
                "no other live node advertises its address ([cluster] advertise); "
                "give one with --to HOST:PORT"
            )
        return random.choice(list(peers.values()))

    def _advertisements(self) -> Advertisements | None:
        """The cluster's advertised addresses (None without [cluster]), opened on first use."""
        cluster = self.settings.cluster
        if cluster is None:
            return None
        if self._advertised is None:
            from chinwag.cluster.advertised import Advertisements

            self._advertised = Advertisements.from_settings(cluster)
        return self._advertised

    async def advertise(self) -> None:
        """Tell the other nodes where clients reach this one, if it is configured."""
        cluster, advertisements = self.settings.cluster, self._advertisements()
        if cluster is not None and cluster.advertise and advertisements is not None:
            await advertisements.advertise(cluster.advertise)

    async def _withdraw(self) -> None:
        """No longer offer this node to drained clients (it is draining or stopping)."""
        if self._advertised is not None:
            await self._advertised.withdraw()

    async def close(self) -> None:
        """The server is stopping: its address is no longer offered."""
        if self._advertised is not None:
            await self._advertised.withdraw()
            await self._advertised.close()

    # --- reload ------------------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """Apply the settings file again; ReloadFailed, and nothing changes, when it or
        the certificate does not load. systemd hears of it (``Type=notify``)."""
        sd_notify.reloading()
        try:
            return self._reload()
        finally:
            sd_notify.notify("READY=1")

    def _reload(self) -> dict[str, Any]:
        try:
            read = self.reread() if self.reread is not None else self.settings
        except ConfigError as error:
            raise ReloadFailed(str(error)) from None
        before = self.settings
        after = before.model_copy(update={name: getattr(read, name) for name in RELOADED})
        log_handler = _open_log(after) if logs.configured() else None
        try:
            certificate = self._reload_certificate(after)
        except ReloadFailed:
            if log_handler is not None:
                log_handler.close()
            raise
        self.settings = after
        self.xmpp.use_limits(after.limits)
        if log_handler is not None:
            logs.install(log_handler, after.log)
        elif after.log != before.log:  # else left as it is: an embedding process's own
            logs.apply_level(after.log)
        changed = _differences(before, read)
        applied = [key for key in changed if key.partition(".")[0] in RELOADED]
        restart = [key for key in changed if key.partition(".")[0] not in RELOADED]
        log.info(
            "reloaded the settings; changed: %s%s",
            ", ".join(applied) or "nothing",
            f"; changed, for a restart to apply: {', '.join(restart)}" if restart else "",
        )
        return {"changed": applied, "restart_needed": restart, "certificate": certificate}

    def reload_on_signal(self) -> None:
        """SIGHUP: reload, and log what failed."""
        try:
            self.reload()
        except ReloadFailed as error:
            log.error("reload failed, nothing changed: %s", error)

    def _reload_certificate(self, settings: Settings) -> dict[str, Any] | None:
        if self.tls is None:
            return None
        cert, key = settings.tls_cert_path, settings.tls_key_path
        try:
            context = loaded_context(cert, key)
            described = _certificate_json(cert)
        except CertificateError as error:
            raise ReloadFailed(f"cannot load the certificate: {error}") from None
        except ValueError as error:
            raise ReloadFailed(f"cannot load the certificate {cert}: {error}") from None
        self.tls.use(context)
        return described


def _open_log(settings: Settings) -> logging.Handler:
    try:
        return logs.open_handler(settings.log)
    except logs.LogFileError as error:
        raise ReloadFailed(str(error)) from None


def _certificate_json(path: Path) -> dict[str, Any]:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return {
        "file": str(path),
        "names": certificate_names(leaf),
        "not_after": leaf.not_valid_after_utc.isoformat(),
    }


def _differences(before: Settings, after: Settings) -> list[str]:
    """The keys (``limits.max_stanza_bytes``) whose values differ."""
    old, new = _flat(before.model_dump()), _flat(after.model_dump())
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
