"""Composition root: builds storage, the accounts domain and the XMPP service from settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp

from chinwag import logs
from chinwag.cluster.errors import ClusterUnavailable
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
from chinwag.server import sd_notify
from chinwag.server.memory import settle_after_start
from chinwag.server.metrics import ServerMetrics
from chinwag.server.retention import ArchiveRetention
from chinwag.server.services import Services
from chinwag.server.tls import CertificateError, ServerTLS, ensure_certificate
from chinwag.server.xmpp_server import XMPPServer
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.archive import SqlArchiveRepository
from chinwag.store.blocking import SqlBlockingRepository
from chinwag.store.contacts import SqlContactRepository
from chinwag.store.db import Database, MigrationError, redacted
from chinwag.store.invitations import SqlInvitationRepository
from chinwag.store.oauth import SqlOAuthRepository
from chinwag.store.offline import SqlOfflineRepository
from chinwag.store.pep import Quota, SqlPepRepository
from chinwag.store.profiles import SqlProfileRepository
from chinwag.store.secret_files import PRIVATE_DIRECTORY_MODE, secret_file
from chinwag.web.admin_token import ensure_admin_token
from chinwag.web.app import build_web_app, signing_secret
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
    metrics: ServerMetrics

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
        archive=SqlArchiveRepository(database, events.origin),
        pep=SqlPepRepository(
            database, Quota(settings.pep.max_nodes, settings.pep.max_account_bytes)
        ),
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
    metrics: ServerMetrics,
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
        archive=services.archive if settings.archive.enabled else None,
        presence=_live_presence(xmpp),
        xmpp=xmpp,
        sessions=xmpp.listed_sessions,
        control=control,
        auth_failures=xmpp.auth_failures,
        invitations=InvitationService(SqlInvitationRepository(database)),
        metrics=metrics,
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
    """The files ``[tls]`` names, or else a self-signed pair in the data directory, made
    at the first start: never in place of named files that are missing."""
    cert, key = settings.tls_cert_path, settings.tls_key_path
    try:
        if not settings.tls_configured and ensure_certificate(cert, key, settings.domain):
            log.info(
                "generated a self-signed TLS certificate for %s in %s", settings.domain, cert.parent
            )
    except OSError as error:
        raise StartupError(
            f"cannot make a self-signed certificate in {cert.parent}: {error.strerror}"
        ) from None
    try:
        return ServerTLS(cert, key)
    except CertificateError as error:
        files = "the [tls] cert and key" if settings.tls_configured else "the self-signed pair"
        raise StartupError(f"cannot use {files}: {error}") from None


def _data_directory(settings: Settings) -> None:
    try:
        settings.data_path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(
            f"cannot make the data directory {settings.data_path}: {error.strerror}"
        ) from None


async def _migrated_database(url: str) -> Database:
    """The database at ``url``, created or brought to the newest schema."""
    try:
        database = Database.open(url)
    except OSError as error:
        raise StartupError(f"cannot use the database {redacted(url)}: {error.strerror}") from None
    try:
        await database.migrate()
    except MigrationError as error:
        await database.close()
        raise StartupError(str(error)) from None
    except (OSError, DBAPIError) as error:
        await database.close()
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise StartupError(f"cannot use the database {redacted(url)}: {reason}") from None
    return database


def prepare_shared_files(settings: Settings) -> None:
    """Make what every process serving ``settings`` reads from the data directory (the
    TLS certificate, the secrets), so that workers started together find it made."""
    settings.data_path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    _tls(settings)
    _stand_in_key(settings.data_path)
    ensure_admin_token(settings.data_path)
    signing_secret(settings.data_path)


@asynccontextmanager
async def running(
    settings: Settings, reread: Callable[[], Settings] | None = None, *, reuse_port: bool = False
) -> AsyncIterator[Running]:
    """Start every service for ``settings``; stop them all, gracefully, on exit.

    ``reread`` reads the settings file again, for a reload (``chinwag reload``, SIGHUP).
    ``reuse_port``: the listeners share their ports with other workers (SO_REUSEPORT).
    """
    _data_directory(settings)
    tls = _tls(settings)
    database = await _migrated_database(settings.database_url)
    services, oauth = build_services(settings, database)
    xmpp = XMPPServer(settings, services)
    xmpp.load_modules()
    control = Control(settings, database, xmpp, reread)
    metrics = ServerMetrics(xmpp, database)
    http = control.http = HTTPServer(
        _web_app(settings, database, services, oauth, xmpp, control, metrics),
        settings.http,
        websocket_max_bytes=2 * settings.limits.max_stanza_bytes,
        reuse_port=reuse_port,
    )
    retention = ArchiveRetention(services.archive, settings.archive.retention_days)
    try:
        try:
            control.tls = tls
            await xmpp.start(tls.context, reuse_port=reuse_port)
            await http.start()
            retention.start()
        except OSError as error:
            raise StartupError(f"cannot listen: {error}") from None
        except ClusterUnavailable as error:
            raise StartupError(str(error)) from None
        await control.advertise()
        metrics.start()
        yield Running(settings, database, services, oauth, xmpp, http, control, metrics)
    finally:
        await metrics.stop()
        await control.close()
        await retention.stop()
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


async def _serve(
    settings: Settings, reread: Callable[[], Settings] | None, reuse_port: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings, reread, reuse_port=reuse_port) as app:
        app.control.stop = stop.set
        loop.add_signal_handler(signal.SIGHUP, app.control.reload_on_signal)
        loop.add_signal_handler(signal.SIGUSR1, app.control.drain_on_signal)
        settle_after_start()
        _announce(app)
        sd_notify.notify("READY=1", f"STATUS=serving {settings.domain}")
        await stop.wait()
        sd_notify.notify("STOPPING=1")
        log.info("stopping: closing every stream with <system-shutdown/>")
    log.info("stopped")


def serve(
    settings: Settings, reread: Callable[[], Settings] | None = None, *, reuse_port: bool = False
) -> None:
    """Run chinwag until SIGINT or SIGTERM, or a drain (SIGUSR1, ``chinwag drain``) is
    done; SIGHUP reloads what ``reread`` reads. ``reuse_port``: as a worker of
    ``chinwag serve --workers``, sharing the listening ports."""
    try:
        logs.configure(settings.log)
    except logs.LogFileError as error:
        raise StartupError(str(error)) from None
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(settings, reread, reuse_port))
    else:
        uvloop.run(_serve(settings, reread, reuse_port))
