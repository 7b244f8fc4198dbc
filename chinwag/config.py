"""Settings: a TOML file validated into frozen, typed settings.

Every command reads the same file, named by ``--config FILE`` or the
``CHINWAG_CONFIG`` variable; with neither, the embedded defaults apply.
Relative paths (``data_dir``, an SQLite URL's file, ``[tls] cert`` and ``key``,
``[log] file``, and ``data_dir``'s default ``chinwag-data``) are taken relative to
the directory of the file, so every command finds the same files wherever it runs;
without a file, relative to the working directory, as the quick start expects
(``./chinwag-data``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

CONFIG_ENV_VAR = "CHINWAG_CONFIG"
CONFIG_DIR = "config_dir"
"""The validation context's key for the directory relative paths start from."""
_SQLITE_URL = "sqlite+aiosqlite:///"


class ConfigError(Exception):
    """A configuration problem, described in one line that names the key."""


def _config_dir(info: ValidationInfo) -> Path | None:
    """The settings file's directory, or None (no file: the working directory)."""
    context = info.context if isinstance(info.context, dict) else {}
    directory = context.get(CONFIG_DIR)
    return directory if isinstance(directory, Path) else None


def _beside_config(path: str, info: ValidationInfo) -> str:
    directory = _config_dir(info)
    if directory is None or not path:
        return path
    return str(directory / path)  # an absolute path stays as it is


ConfigPath = Annotated[str, AfterValidator(_beside_config)]
"""A file or directory setting: relative to the settings file's directory."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class C2SSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5222, ge=0, le=65535)
    direct_tls_port: int = Field(default=5223, ge=0, le=65535)
    require_tls: bool = True
    """False allows SASL on plaintext streams (loopback benchmarks only). Over WebSocket,
    TLS is the WebSocket's own: ``wss://``, a proxy's ``X-Forwarded-Proto: https``, or
    the loopback (see docs/protocol.md)."""
    proxy_protocol: bool = False
    """True: every connection to ``port`` and ``direct_tls_port`` begins with a PROXY
    protocol header (version 1 or 2, as a load balancer's ``send-proxy`` sends it), and
    the client address it names is the stream's, which the per-address sign-in limit
    counts; a connection without a valid one is closed unread (docs/security.md)."""
    proxy_trusted: tuple[str, ...] = ("127.0.0.1", "::1")
    """With ``proxy_protocol``: addresses or networks (``10.0.0.0/8``) of the load balancers
    that may connect; a connection from anywhere else is closed unread. Empty lets any
    source connect, for ports that only the balancer can reach."""

    @field_validator("proxy_trusted", mode="before")
    @classmethod
    def _trusted_list(cls, value: object) -> object:
        return _address_list(value)


class HTTPSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5280, ge=0, le=65535)
    operators: tuple[str, ...] = ()
    """Usernames who, signed in on the web, operate the developer portal: they see
    every app and can suspend or resume it."""

    @field_validator("operators", mode="before")
    @classmethod
    def _operator_list(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(value)
        raise ValueError('must be a list of usernames, such as ["admin"]')

    websocket_origins: tuple[str, ...] = ()
    """Web origins (``scheme://host[:port]``) whose pages may open XMPP streams at
    ``/xmpp-websocket``, such as ``["https://chat.example.com"]``; empty allows any.
    A handshake without an ``Origin`` header (not from a browser) is always allowed."""

    @field_validator("websocket_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        if not isinstance(value, list | tuple) or not all(
            isinstance(origin, str) and "://" in origin for origin in value
        ):
            raise ValueError('must be a list of origins, such as ["https://chat.example.com"]')
        return tuple(origin.strip().rstrip("/").lower() for origin in value)

    public_url: str = ""
    """The address users and apps reach this listener at, such as
    ``https://chat.example.com`` behind a proxy that terminates TLS: the ``issuer`` and
    endpoints of the OAuth metadata (RFC 8414), and the WebSocket URL that host-meta
    advertises (``wss://`` when it is https). Empty means ``http://{host}:{port}`` of this
    listener. A request's ``Host`` header never changes either."""

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        if not url:
            return url
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
            or "#" in url
        ):
            raise ValueError(
                'must be an http(s) URL without query or fragment, such as "https://chat.example.com"'
            )
        return url.rstrip("/")

    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    """Addresses or networks (``10.0.0.0/8``) of the reverse proxies whose
    ``X-Forwarded-Proto`` and ``X-Forwarded-For`` headers are believed: only a request from
    one of them counts as https (Secure cookies) or from the address it names. Empty
    believes no proxy."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        return _address_list(value)


def _address_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(source, str) and _is_address_or_network(source) for source in value
    ):
        raise ValueError('must be a list of IP addresses or networks, such as ["127.0.0.1"]')
    return tuple(value)


def _is_address_or_network(text: str) -> bool:
    try:
        if "/" in text:
            ipaddress.ip_network(text)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class DatabaseSettings(_Section):
    url: str = ""
    """Empty means ``sqlite+aiosqlite:///{data_dir}/chinwag.db``."""

    @field_validator("url")
    @classmethod
    def _known_driver(cls, url: str, info: ValidationInfo) -> str:
        if url and not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return _sqlite_file_beside_config(url, info)


def _sqlite_file_beside_config(url: str, info: ValidationInfo) -> str:
    """``url`` with a relative SQLite file taken relative to the settings file's directory."""
    if not url.startswith(_SQLITE_URL):
        return url
    file, separator, query = url.removeprefix(_SQLITE_URL).partition("?")
    if file in ("", ":memory:") or file.startswith("file:"):
        return url
    return f"{_SQLITE_URL}{_beside_config(file, info)}{separator}{query}"


class TLSSettings(_Section):
    cert: ConfigPath = ""
    """The certificate chain (PEM), such as certbot's ``fullchain.pem``. Empty (with
    ``key`` empty too) means ``{data_dir}/tls/{domain}.crt``, generated self-signed on
    the first start; a file named here is never generated: if it cannot be loaded,
    chinwag does not start."""
    key: ConfigPath = ""
    """The private key (PEM) of ``cert``, such as certbot's ``privkey.pem``."""

    @model_validator(mode="after")
    def _both_or_neither(self) -> TLSSettings:
        if bool(self.cert) != bool(self.key):
            raise ValueError("cert and key go together: set both, or neither")
        return self


class LimitsSettings(_Section):
    max_stanza_bytes: int = Field(default=262144, ge=1024)
    auth_timeout_seconds: float = Field(default=30.0, gt=0)
    """An unauthenticated stream idle this long gets <connection-timeout/>."""
    max_auth_failures: int = Field(default=3, ge=1)
    """SASL failures allowed on one stream before it is closed."""
    max_auth_failures_per_address: int = Field(default=20, ge=0)
    """Failed sign-ins from one client address (an IPv6 /64) before it is refused (0: no limit)."""
    auth_failure_ban_seconds: float = Field(default=3600.0, gt=0)
    """How long failures are remembered, and an address refused, after its last failure."""
    keepalive_seconds: float = Field(default=300.0, ge=0)
    """Send a whitespace keepalive on a bound stream silent this long (0: never)."""
    ping_after_seconds: float = Field(default=60.0, ge=0)
    """Ping (XEP-0199) a bound stream that has sent nothing for this long (0: never)."""
    ping_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long a pinged stream has to send anything before it is closed with
    <connection-timeout/>; so has a stream that leaves the server's XEP-0198 <r/>
    unanswered, and one after its offline messages (and the ping that follows them)."""
    stanzas_per_second: float = Field(default=1000.0, ge=0)
    """Top-level elements (stanzas, SASL and TLS negotiation) one stream may send per second,
    on average; a faster one is read more slowly, never disconnected (0: no limit)."""
    bytes_per_second: int = Field(default=1_000_000, ge=0)
    """Bytes one stream may send per second, on average, from its first byte on; a faster
    one is read more slowly, never disconnected (0: no limit)."""
    burst_seconds: float = Field(default=2.0, gt=0)
    """How far ahead of those rates a stream may run before it is slowed: after a quiet
    spell it may send this many seconds' worth at once."""


CONTACT_KINDS = ("abuse", "admin", "feedback", "sales", "security", "status", "support")
"""XEP-0157's address kinds, each a ``[server_info]`` list."""


class ServerInfoSettings(_Section):
    show_version: bool = True
    """Answer XEP-0092 software version queries with name and version."""
    show_os: bool = False
    abuse: tuple[str, ...] = ()
    """XEP-0157 contact addresses (``mailto:``, ``xmpp:`` or ``https:`` URIs), listed in
    the server's disco#info: whom to tell of abuse."""
    admin: tuple[str, ...] = ()
    """Whom to ask about the service in general."""
    feedback: tuple[str, ...] = ()
    sales: tuple[str, ...] = ()
    security: tuple[str, ...] = ()
    """Whom to tell of a security problem."""
    status: tuple[str, ...] = ()
    """Where the service's status is published (a web page, say)."""
    support: tuple[str, ...] = ()

    @field_validator(*CONTACT_KINDS, mode="before")
    @classmethod
    def _uri_list(cls, value: object) -> object:
        if not isinstance(value, list | tuple) or not all(
            isinstance(uri, str) and ":" in uri for uri in value
        ):
            raise ValueError('must be a list of URIs, such as ["mailto:abuse@example.com"]')
        return tuple(value)

    def contacts(self) -> dict[str, tuple[str, ...]]:
        """The XEP-0157 addresses given, by kind."""
        return {kind: getattr(self, kind) for kind in CONTACT_KINDS if getattr(self, kind)}


class PepSettings(_Section):
    max_items: int = Field(default=64, ge=1, le=10_000)
    """Items a personal eventing node keeps at most (XEP-0163); a node configured for
    more keeps this many, and publishing beyond it drops the oldest."""
    max_payload_bytes: int = Field(default=262_144, ge=256)
    """The largest item payload accepted, serialised; larger ones get not-acceptable."""
    max_nodes: int = Field(default=1000, ge=1)
    """Personal eventing nodes an account keeps at most; one more gets policy-violation."""
    max_account_bytes: int = Field(default=67_108_864, ge=262_144)
    """Bytes of PEP items and private XML (XEP-0049) one account keeps at most together;
    a write that would keep more gets policy-violation, and nothing of it is kept."""


class RosterSettings(_Section):
    management: bool = False
    """True turns on RFC 6121 roster management and subscriptions; by default the
    roster mirrors the network's contact list and is read-only over XMPP."""


class MessagesSettings(_Section):
    from_strangers: bool = False
    """False keeps users who are not contacts apart: their messages and IQs get
    service-unavailable and their presence is ignored, as for an account that does not exist."""
    offline_quota: int = Field(default=1000, ge=0)
    """Messages stored per offline user; further ones bounce with service-unavailable."""
    csi_queue_size: int = Field(default=256, ge=0)
    """Stanzas held back from a client that says it is inactive (XEP-0352) before all are
    written at once (0: hold none)."""


class VCardSettings(_Section):
    public: bool = False
    """True lets anyone fetch any user's vCard; by default only contacts (and oneself)."""
    updates: bool = False
    """True accepts vCard sets, which update the user's profile."""


class StreamManagementSettings(_Section):
    """XEP-0198: acknowledgements, and sessions that outlive a dropped connection."""

    resume_timeout_seconds: int = Field(default=300, ge=0)
    """How long a session whose client enabled resumption waits for it after its
    connection drops without a closing tag; what waited for it then goes to its other
    resources or offline storage (0: no resumption)."""
    max_resume_timeout_seconds: int = Field(default=300, ge=0)
    """The longest wait a client may ask for with <enable max='…'/>; a client that
    names none gets ``resume_timeout_seconds``."""
    max_unacked_stanzas: int = Field(default=5000, ge=1)
    """Stanzas sent to a client and not yet acknowledged beyond which its stream is
    closed with <policy-violation/>."""
    request_ack_after: int = Field(default=10, ge=1)
    """Unacknowledged stanzas after which the server asks for an acknowledgement (<r/>)
    with what it writes, one request outstanding at a time. Fewer are asked about with a
    write a second after the last request, or by the ping sweep when pings are on
    (``limits.ping_after_seconds``); 1: every write asks."""

    @model_validator(mode="after")
    def _timeout_within_maximum(self) -> StreamManagementSettings:
        if self.resume_timeout_seconds > self.max_resume_timeout_seconds:
            raise ValueError("resume_timeout_seconds must not exceed max_resume_timeout_seconds")
        return self


class ArchiveSettings(_Section):
    """XEP-0313: each user's archive of the messages with a body they send and receive."""

    enabled: bool = True
    """False archives nothing and offers no archive (stored messages stay until purged)."""
    default_policy: Literal["always", "never", "roster"] = "always"
    """What is archived for a user who set no preferences: every message, none, or those
    exchanged with contacts."""
    retention_days: int = Field(default=0, ge=0)
    """Messages older than this are deleted, checked every hour (0: kept forever)."""
    max_page: int = Field(default=250, ge=1, le=10_000)
    """The most messages one query returns; a client asking for more gets this many."""


class AuthSettings(_Section):
    account_passwords: bool = True
    """False is the strict mode of the modelled service: SCRAM and PLAIN accept only
    app passwords, and the account password signs in on the web only (and cannot be
    changed over XMPP)."""
    invitations: bool = False
    """True lets people sign themselves up at the links ``chinwag invite create`` makes
    (``/invite/{token}``, each good for one account); false serves no sign-up page."""


class OAuthSettings(_Section):
    access_token_ttl_seconds: int = Field(default=3600, ge=60)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    authorization_code_ttl_seconds: int = Field(default=60, ge=10)
    allow_implicit: bool = False
    """True lets the apps registered for it use the implicit grant (``response_type=token``),
    the legacy of the service chinwag is modelled on, which RFC 9700 advises against; false
    answers every such request ``unsupported_response_type``."""


class ClusterSettings(_Section):
    """Several chinwag nodes sharing one Redis (or Valkey): docs/cluster.md."""

    redis_url: str
    """The Redis that holds the session registry, the nodes' inboxes and their leases,
    such as ``redis://redis.internal:6379/0`` (``rediss://`` for TLS, ``unix://`` for a
    socket)."""
    node: str
    """This node's name, unique in the cluster (``a``, ``chat-1``): letters, digits,
    ``.``, ``_`` and ``-``."""
    lease_seconds: float = Field(default=5.0, ge=0.5, le=300)
    """How long a node that stops renewing its lease counts as alive; then another node
    removes its sessions and routes what waited for it again."""
    key_prefix: str = "chinwag:"
    """Prefix of every Redis key, so that several clusters can share one Redis."""
    advertise: str | None = None
    """Where clients reach this node's c2s listener from outside (``chat-a.example.org:5222``):
    a node being drained sends its clients to another live node's."""

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                'must be a redis:// (rediss://, unix://) URL, such as "redis://127.0.0.1:6379/0"'
            )
        return url

    @field_validator("node")
    @classmethod
    def _node_name(cls, node: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", node):
            raise ValueError("must be 1 to 64 letters, digits, '.', '_' or '-', such as \"a\"")
        return node

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._:-]{0,64}", prefix):
            raise ValueError("must be up to 64 letters, digits, '.', '_', ':' or '-'")
        return prefix

    @field_validator("advertise")
    @classmethod
    def _advertised(cls, address: str | None) -> str | None:
        return None if address is None else other_host(address)


def other_host(text: str) -> str:
    """``text`` if it names where a client may connect, as <see-other-host/> does
    (RFC 6120 4.9.3.19): a host name or IPv4 address, or a bracketed IPv6 one, and a
    port; ValueError otherwise."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})", text.strip())
    if match is None or not 0 < int(match[2]) < 65536:
        raise ValueError(
            f"{text!r} is not HOST:PORT (such as chat-b.example.org:5222 or [2001:db8::2]:5222)"
        )
    if match[1].startswith("["):
        ipaddress.IPv6Address(match[1][1:-1])
    return text.strip()


class MetricsSettings(_Section):
    """Who may read ``/metrics`` on the HTTP listener (docs/operations.md)."""

    allow: tuple[str, ...] = ("127.0.0.1", "::1")
    """Addresses or networks (``10.0.0.0/8``) that may read it without a token; empty
    lets none. Behind a reverse proxy, the address of ``X-Forwarded-For`` from one of
    ``[http] trusted_proxies``."""
    token: str = ""
    """A bearer token (``Authorization: Bearer …``) that lets any address read it;
    empty: none does."""

    @field_validator("allow", mode="before")
    @classmethod
    def _allow_list(cls, value: object) -> object:
        return _address_list(value)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    """The least severe of chinwag's own log lines that ``chinwag serve`` writes."""
    format: Literal["text", "json"] = "text"
    """``text``: one readable line per event, its fields as ``key=value``; ``json``: one
    JSON object per line (time, level, logger, message and the event's fields)."""
    file: ConfigPath | None = None
    """Where ``chinwag serve`` appends its log; None: standard error. The file is opened
    again at each reload (SIGHUP, ``chinwag reload``), as logrotate expects."""

    @field_validator("file")
    @classmethod
    def _file_path(cls, file: str | None) -> str | None:
        if file is not None and not file.strip():
            raise ValueError("must be a file's path; leave it out to log to standard error")
        return file


class Settings(_Section):
    domain: str = "localhost"
    data_dir: ConfigPath = Field(default="./chinwag-data", validate_default=True)
    c2s: C2SSettings = C2SSettings()
    http: HTTPSettings = HTTPSettings()
    database: DatabaseSettings = DatabaseSettings()
    tls: TLSSettings = TLSSettings()
    limits: LimitsSettings = LimitsSettings()
    server_info: ServerInfoSettings = ServerInfoSettings()
    roster: RosterSettings = RosterSettings()
    messages: MessagesSettings = MessagesSettings()
    vcard: VCardSettings = VCardSettings()
    pep: PepSettings = PepSettings()
    auth: AuthSettings = AuthSettings()
    oauth: OAuthSettings = OAuthSettings()
    stream_management: StreamManagementSettings = StreamManagementSettings()
    archive: ArchiveSettings = ArchiveSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    cluster: ClusterSettings | None = None
    """None: one process, with nothing shared and no Redis."""

    @field_validator("domain")
    @classmethod
    def _bare_domain(cls, domain: str) -> str:
        if not domain or domain != domain.strip() or any(c in domain for c in "@/ "):
            raise ValueError("must be a bare domain name such as 'localhost'")
        return domain

    @model_validator(mode="after")
    def _cluster_on_postgresql(self) -> Settings:
        if self.cluster is not None and not self.database_url.startswith("postgresql"):
            raise ValueError(
                "[cluster] needs PostgreSQL: set [database] url to a postgresql+asyncpg:// URL "
                "that every node shares (SQLite serves one process)"
            )
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_path / 'chinwag.db'}"

    @property
    def tls_configured(self) -> bool:
        """Whether ``[tls]`` names the files: else serve makes a self-signed pair."""
        return bool(self.tls.cert)

    @property
    def tls_cert_path(self) -> Path:
        return (
            Path(self.tls.cert) if self.tls.cert else self.data_path / "tls" / f"{self.domain}.crt"
        )

    @property
    def tls_key_path(self) -> Path:
        return Path(self.tls.key) if self.tls.key else self.data_path / "tls" / f"{self.domain}.key"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{key}'"
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return f"bad config: {message}"
    return f"bad config value for '{key}': {message}"


def settings_from_mapping(data: dict[str, Any], config_dir: Path | None = None) -> Settings:
    """Validate a parsed TOML document, whose relative paths start from ``config_dir``
    (None: the working directory); raises ConfigError naming the bad key."""
    try:
        return Settings.model_validate(data, context={CONFIG_DIR: config_dir})
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read ``path``, else ``$CHINWAG_CONFIG``, else the embedded defaults."""
    chosen = path or os.environ.get(CONFIG_ENV_VAR) or None
    if chosen is None:
        return Settings()
    try:
        with open(chosen, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read config file {chosen}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {chosen} is not valid TOML: {error}") from None
    return settings_from_mapping(data, Path(os.path.abspath(chosen)).parent)
