"""Composition root: builds storage, the accounts domain and the XMPP service from settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from chinwag import logs
from chinwag.config import Settings
from chinwag.control import Control
from chinwag.network.accounts import AccountService
from chinwag.network.blocking import BlockingService
from chinwag.network.contacts import ContactService
from chinwag.network.events import EventLog
from chinwag.network.invitations import InvitationService
from chinwag.network.profiles import ProfileService
from chinwag.oauth.authenticator import PlatformAuthenticator
from chinwag.oauth.service import OAuthService
from chinwag.server.memory import settle_after_start
from chinwag.server.services import Services
from chinwag.server.tls import ServerTLS, ensure_certificate
from chinwag.server.xmpp_server import XMPPServer
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.blocking import SqlBlockingRepository
from chinwag.store.contacts import SqlContactRepository
from chinwag.store.db import Database, redacted
from chinwag.store.invitations import SqlInvitationRepository
from chinwag.store.oauth import SqlOAuthRepository
from chinwag.store.offline import SqlOfflineRepository
from chinwag.store.pep import SqlPepRepository
from chinwag.store.profiles import SqlProfileRepository
from chinwag.store.secret_files import PRIVATE_DIRECTORY_MODE, secret_file
from chinwag.web.app import build_web_app
from chinwag.web.presence import ONLINE, SHOWS, PresenceSource, ResourcePresence
from chinwag.web.server import HTTPServer
from chinwag.xmpp.jid import JID

log = logging.getLogger("chinwag")

STAND_IN_KEY_FILE = "scram-secret"


class StartupError(Exception):
    """A problem the operator can fix (a port in use, say), in one line."""


@dataclass
class Running:
    """A started chinwag: what tests and the CLI may reach into."""

    settings: Settings
    database: Database
    services: Services
    oauth: OAuthService
    xmpp: XMPPServer
    http: HTTPServer
    control: Control

    @property
    def accounts(self) -> AccountService:
        return self.services.accounts


def build_services(settings: Settings, database: Database) -> tuple[Services, OAuthService]:
    events = EventLog(database)
    accounts = AccountService(SqlAccountRepository(database), events)
    oauth = OAuthService(SqlOAuthRepository(database), accounts, settings.oauth)
    authenticator = PlatformAuthenticator(
        accounts,
        oauth,
        account_passwords=settings.auth.account_passwords,
        stand_in_key=_stand_in_key(settings.data_path),
    )
    services = Services(
        authenticator=authenticator,
        accounts=accounts,
        contacts=ContactService(SqlContactRepository(database), events),
        profiles=ProfileService(SqlProfileRepository(database), events),
        offline=SqlOfflineRepository(database),
        events=events,
        blocking=BlockingService(SqlBlockingRepository(database), events),
        pep=SqlPepRepository(database),
    )
    return services, oauth


def _stand_in_key(data_dir: Path) -> bytes:
    """The key of the SCRAM stand-ins for unknown names, ``{data_dir}/scram-secret``, made
    (0600) if absent: kept, so that an unknown name's salt does not change at a restart."""
    return secret_file(data_dir / STAND_IN_KEY_FILE, "derive SCRAM stand-ins").encode()


def _web_app(
    settings: Settings,
    database: Database,
    services: Services,
    oauth: OAuthService,
    xmpp: XMPPServer,
    control: Control,
) -> ASGIApp:
    # The REST API's changes carry an origin of their own, as the CLI's do, so the
    # XMPP server's event pump applies them (roster and block list pushes, presence).
    web_events = EventLog(database)
    return build_web_app(
        settings,
        services.accounts,
        oauth,
        contacts=ContactService(SqlContactRepository(database), web_events),
        profiles=ProfileService(SqlProfileRepository(database), web_events),
        blocking=BlockingService(SqlBlockingRepository(database), web_events),
        presence=_live_presence(xmpp),
        xmpp=xmpp,
        sessions=xmpp.sessions.all,
        control=control,
        auth_failures=xmpp.auth_failures,
        invitations=InvitationService(SqlInvitationRepository(database)),
    )


def _live_presence(xmpp: XMPPServer) -> PresenceSource:
    """Who is online, read from the XMPP server's routing records (read-only)."""

    def presence(username: str) -> list[ResourcePresence]:
        found = []
        for record in xmpp.router.resources(JID(username, xmpp.domain)):
            if not record.available or record.presence is None:
                continue
            show, status = record.presence.find("show"), record.presence.find("status")
            found.append(
                ResourcePresence(
                    resource=record.jid.resource or "",
                    show=show.text if show is not None and show.text in SHOWS else ONLINE,
                    status=status.text if status is not None else None,
                    priority=record.priority,
                )
            )
        return found

    return presence


def _tls(settings: Settings) -> ServerTLS:
    cert, key = settings.tls_cert_path, settings.tls_key_path
    if ensure_certificate(cert, key, settings.domain):
        log.info(
            "generated a self-signed TLS certificate for %s in %s", settings.domain, cert.parent
        )
    return ServerTLS(cert, key)


@asynccontextmanager
async def running(
    settings: Settings, reread: Callable[[], Settings] | None = None
) -> AsyncIterator[Running]:
    """Start every service for ``settings``; stop them all, gracefully, on exit.

    ``reread`` reads the settings file again, for a reload (``chinwag reload``, SIGHUP).
    """
    settings.data_path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    database = Database.open(settings.database_url)
    await database.migrate()
    services, oauth = build_services(settings, database)
    xmpp = XMPPServer(settings, services)
    xmpp.load_modules()
    control = Control(settings, database, xmpp, reread)
    http = control.http = HTTPServer(
        _web_app(settings, database, services, oauth, xmpp, control),
        settings.http,
        websocket_max_bytes=2 * settings.limits.max_stanza_bytes,
    )
    try:
        try:
            control.tls = _tls(settings)
            await xmpp.start(control.tls.context)
            await http.start()
        except OSError as error:
            raise StartupError(f"cannot listen: {error}") from None
        yield Running(settings, database, services, oauth, xmpp, http, control)
    finally:
        # XMPP first: its streams, WebSocket ones too, end with <system-shutdown/>
        # while the HTTP listener still carries them.
        await xmpp.stop()
        await http.stop()
        await database.close()


def _announce(app: Running) -> None:
    settings, ports = app.settings, app.xmpp.ports
    host = settings.c2s.host
    log.info("chinwag is serving %s", settings.domain)
    log.info(
        "XMPP clients: %s:%s (STARTTLS), %s:%s (direct TLS)",
        host,
        ports["c2s"],
        host,
        ports["direct_tls"],
    )
    log.info(
        "web (OAuth, sign-in, developer portal, WebSocket): %s/",
        settings.http.public_url or f"http://{settings.http.host}:{app.http.port}",
    )
    log.info("database: %s", redacted(settings.database_url))
    log.info("add a user with: chinwag user add NAME --password PASSWORD")


async def _serve(settings: Settings, reread: Callable[[], Settings] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings, reread) as app:
        loop.add_signal_handler(signal.SIGHUP, app.control.reload_on_signal)
        settle_after_start()
        _announce(app)
        await stop.wait()
        log.info("stopping: closing every stream with <system-shutdown/>")
    log.info("stopped")


def serve(settings: Settings, reread: Callable[[], Settings] | None = None) -> None:
    """Run chinwag until SIGINT or SIGTERM; SIGHUP reloads what ``reread`` reads."""
    try:
        logs.configure(settings.log)
    except logs.LogFileError as error:
        raise StartupError(str(error)) from None
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(settings, reread))
    else:
        uvloop.run(_serve(settings, reread))
