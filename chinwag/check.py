"""``chinwag check``: what stands between the settings and a server clients can use.

Each finding is one line (``ok``, ``warning`` or ``error``), about one of:

- config: the settings file, and settings that weaken the server;
- tls: the certificate and key load and belong together, the certificate is valid now
  and for a while yet, names the domain (its DNS-ID, RFC 6125), and chains to a CA
  this machine trusts, unless it is self-signed;
- dns: the SRV records clients look up, ``_xmpp-client._tcp`` (RFC 6120 3.2) and
  ``_xmpps-client._tcp`` (XEP-0368), against the ports served, and the addresses of
  their targets; a local domain such as ``localhost`` is not looked up;
- database: reachable, and its schema at this chinwag's newest revision;
- ports: each listener's port is free, or served by the running chinwag.

It changes nothing: it creates no database, certificate or file.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import dns.exception
import dns.rdtypes.IN.SRV
import dns.resolver
import idna
from cryptography import x509

from chinwag.cli_common import ServerProblem, ask_server
from chinwag.config import Settings
from chinwag.server.tls import CertificateError, certificate_names, loaded_context

Level = Literal["ok", "warning", "error"]

EXPIRY_WARNING = timedelta(days=30)
DNS_TIMEOUT_SECONDS = 2.0
DNS_LIFETIME_SECONDS = 5.0
DATABASE_TIMEOUT_SECONDS = 10.0
STATUS_TIMEOUT_SECONDS = 3.0
DEFAULT_CLIENT_PORT = 5222
"""Where clients connect when a domain has no SRV record (RFC 6120 3.2.2)."""
CLIENT_SRV = "_xmpp-client._tcp"
DIRECT_TLS_SRV = "_xmpps-client._tcp"


@dataclass(frozen=True)
class Finding:
    level: Level
    area: str
    message: str


def ok(area: str, message: str) -> Finding:
    return Finding("ok", area, message)


def warning(area: str, message: str) -> Finding:
    return Finding("warning", area, message)


def error(area: str, message: str) -> Finding:
    return Finding("error", area, message)


def resolver(server: str | None) -> dns.resolver.Resolver:
    """The system's resolver, or one that asks ``server`` (``ADDRESS`` or ``ADDRESS:PORT``,
    ``[IPv6]:PORT``) only; ValueError for a server that is not an address."""
    if server is None:
        chosen = dns.resolver.Resolver()
    else:
        address, port = _address_and_port(server)
        chosen = dns.resolver.Resolver(configure=False)
        chosen.nameservers = [address]
        chosen.port = port
    chosen.timeout = DNS_TIMEOUT_SECONDS
    chosen.lifetime = DNS_LIFETIME_SECONDS
    return chosen


def _address_and_port(server: str) -> tuple[str, int]:
    host, port = server, "53"
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif server.count(":") == 1:
        host, port = server.split(":")
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        raise ValueError(f"{server} is not ADDRESS or ADDRESS:PORT of a DNS server") from None


def run_checks(
    settings: Settings,
    config_file: str | None,
    dns_resolver: dns.resolver.Resolver | None,
    now: datetime,
) -> list[Finding]:
    """Every finding about ``settings``; ``dns_resolver`` None when the system has none."""
    return [
        *config_findings(settings, config_file),
        *tls_findings(settings, now),
        *dns_findings(settings, dns_resolver),
        *database_findings(settings.database_url),
        *port_findings(settings),
    ]


# --- config ------------------------------------------------------------------------------


def config_findings(settings: Settings, config_file: str | None) -> Iterator[Finding]:
    yield ok("config", f"read {config_file}" if config_file else "the built-in defaults")
    host = settings.c2s.host
    if not settings.c2s.require_tls and not _is_loopback(host):
        yield warning(
            "config",
            f"c2s.require_tls = false lets clients on {host or 'every address'} send "
            "passwords unencrypted",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_domain(domain: str) -> bool:
    """A name only this machine (or network) resolves: no public DNS records to check."""
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        return True
    name = domain.lower().rstrip(".")
    return "." not in name or name.endswith((".localhost", ".local", ".internal"))


# --- tls ---------------------------------------------------------------------------------


def tls_findings(settings: Settings, now: datetime) -> Iterator[Finding]:
    cert_path, key_path = settings.tls_cert_path, settings.tls_key_path
    domain = settings.domain
    if not settings.tls_configured:
        problem = _self_signed_problem(cert_path, key_path, domain)
        if problem is not None:
            yield problem
            return
    try:
        loaded_context(cert_path, key_path)
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except CertificateError as problem:
        yield error("tls", f"{problem}: chinwag serve will not start")
        return
    except (OSError, ValueError) as problem:
        yield error("tls", f"cannot use {cert_path}: {problem}")
        return
    yield ok("tls", f"{cert_path} and its key {key_path} load")
    yield from _certificate_findings(chain, domain, now)


def _self_signed_problem(cert_path: Path, key_path: Path, domain: str) -> Finding | None:
    """With no ``[tls]`` files: the self-signed pair of the data directory, if it is not
    whole yet (serve makes one, a finding about it), or None to check the files."""
    if not cert_path.exists() and not key_path.exists():
        note = (
            f"no certificate at {cert_path} yet: chinwag serve makes a self-signed one for {domain}"
        )
        if is_local_domain(domain):
            return ok("tls", note)
        return warning("tls", f"{note}, which clients refuse: set [tls] cert and key")
    for present, absent in ((cert_path, key_path), (key_path, cert_path)):
        if not absent.exists():
            return error(
                "tls",
                f"{absent} is missing, so chinwag serve would replace {present} "
                "with a self-signed certificate",
            )
    return None


def _certificate_findings(
    chain: Sequence[x509.Certificate], domain: str, now: datetime
) -> Iterator[Finding]:
    leaf = chain[0]
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    until = f"{not_after:%Y-%m-%d %H:%M} UTC"
    if now < not_before:
        yield error("tls", f"the certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC")
    elif now >= not_after:
        yield error("tls", f"the certificate expired on {until}")
    elif not_after - now < EXPIRY_WARNING:
        yield warning(
            "tls", f"the certificate expires on {until}, in {(not_after - now).days} days"
        )
    else:
        yield ok("tls", f"the certificate is valid until {until} ({(not_after - now).days} days)")
    names = certificate_names(leaf)
    if not any(_name_matches(name, domain) for name in names):
        shown = ", ".join(names) or "no name"
        yield error("tls", f"the certificate is for {shown}, not {domain}: clients refuse it")
        return
    yield ok("tls", f"the certificate names {domain}")
    if leaf.issuer == leaf.subject:
        if is_local_domain(domain):
            yield ok("tls", "the certificate is self-signed, as a local domain's may be")
        else:
            yield warning(
                "tls",
                "the certificate is self-signed: clients refuse it unless told to trust "
                "it; get one from a CA (such as Let's Encrypt)",
            )
        return
    yield _trust_finding(chain, domain, now)


def _name_matches(name: str, domain: str) -> bool:
    """RFC 6125 6.4: the same name, or a wildcard standing for the domain's first label."""
    name, domain = _ascii(name), _ascii(domain)
    if name.startswith("*."):
        first, _, rest = domain.partition(".")
        return bool(first) and "." in rest and rest == name[2:]
    return name == domain


def _ascii(name: str) -> str:
    try:
        return idna.encode(name.rstrip("."), uts46=True).decode()
    except idna.IDNAError:
        return name.rstrip(".").lower()


def _trust_finding(chain: Sequence[x509.Certificate], domain: str, now: datetime) -> Finding:
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    paths = ssl.get_default_verify_paths()
    bundle = paths.cafile or paths.openssl_cafile
    try:
        store = Store(x509.load_pem_x509_certificates(Path(bundle).read_bytes()))
    except (OSError, ValueError):
        return warning(
            "tls", f"cannot tell whether clients trust the certificate: no CAs at {bundle}"
        )
    verifier = (
        PolicyBuilder().store(store).time(now).build_server_verifier(x509.DNSName(_ascii(domain)))
    )
    try:
        verified = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as refused:
        return error(
            "tls", f"the certificate does not chain to a CA this machine trusts: {refused}"
        )
    return ok("tls", f"the certificate chains to {verified[-1].subject.rfc4514_string()}")


# --- dns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Service:
    label: str
    port: int
    what: str


def dns_findings(
    settings: Settings, dns_resolver: dns.resolver.Resolver | None
) -> Iterator[Finding]:
    domain = settings.domain
    if is_local_domain(domain):
        yield ok("dns", f"{domain} is a local name: no SRV records are expected, nor looked up")
        return
    if dns_resolver is None:
        yield warning("dns", "no DNS resolver is configured on this machine: nothing looked up")
        return
    c2s = settings.c2s
    for service in (
        _Service(CLIENT_SRV, c2s.port, "STARTTLS"),
        _Service(DIRECT_TLS_SRV, c2s.direct_tls_port, "direct TLS (XEP-0368)"),
    ):
        yield from _service_findings(dns_resolver, _ascii(domain), service)


def _service_findings(
    dns_resolver: dns.resolver.Resolver, domain: str, service: _Service
) -> Iterator[Finding]:
    name = f"{service.label}.{domain}"
    expected = f"expected: {name}. SRV 0 5 {service.port} <this server's host name>."
    try:
        records = _srv_records(dns_resolver, name)
    except dns.exception.DNSException as problem:
        yield warning("dns", f"cannot look up {name}: {_dns_reason(problem)}")
        return
    if not records:
        yield from _no_records(dns_resolver, domain, name, service, expected)
        return
    shown = "; ".join(
        f"{record.priority} {record.weight} {record.port} {record.target}" for record in records
    )
    if len(records) == 1 and records[0].target.to_text() == ".":
        yield error("dns", f"{name} says no such service is offered (target '.'); {expected}")
        return
    yield ok("dns", f"{name} SRV {shown}")
    ports = sorted({record.port for record in records})
    if service.port not in ports:
        yield warning(
            "dns",
            f"{name} points at port {', '.join(map(str, ports))}, and chinwag serves "
            f"{service.what} on {service.port}: fine only if something forwards it",
        )
    for target in sorted({record.target.to_text() for record in records} - {"."}):
        try:
            addresses = _addresses(dns_resolver, target)
        except dns.exception.DNSException as problem:
            yield warning("dns", f"cannot look up {target}: {_dns_reason(problem)}")
            continue
        if addresses:
            yield ok("dns", f"{target} is at {', '.join(addresses)}")
        else:
            yield error("dns", f"{target} (named by {name}) has no address: clients cannot connect")


def _no_records(
    dns_resolver: dns.resolver.Resolver,
    domain: str,
    name: str,
    service: _Service,
    expected: str,
) -> Iterator[Finding]:
    if service.label == DIRECT_TLS_SRV:
        yield warning(
            "dns",
            f"no {name} SRV record: clients will not find direct TLS on port {service.port}; {expected}",
        )
        return
    if service.port != DEFAULT_CLIENT_PORT:
        yield error(
            "dns",
            f"no {name} SRV record: clients try port {DEFAULT_CLIENT_PORT} of {domain}, "
            f"and chinwag listens on {service.port}; {expected}",
        )
        return
    try:
        addresses = _addresses(dns_resolver, domain)
    except dns.exception.DNSException as problem:
        yield warning(
            "dns", f"no {name} SRV record, and cannot look up {domain}: {_dns_reason(problem)}"
        )
        return
    if not addresses:
        yield error(
            "dns",
            f"no {name} SRV record, and {domain} has no address: clients cannot find the server; {expected}",
        )
        return
    yield warning(
        "dns",
        f"no {name} SRV record: clients fall back to {domain} ({', '.join(addresses)}) "
        f"port {DEFAULT_CLIENT_PORT}; {expected}",
    )


def _srv_records(dns_resolver: dns.resolver.Resolver, name: str) -> list[dns.rdtypes.IN.SRV.SRV]:
    """The SRV records of ``name`` by priority, then weight (none: NXDOMAIN or no answer)."""
    try:
        answer = dns_resolver.resolve(name, "SRV", raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return []
    records = [record for record in answer if isinstance(record, dns.rdtypes.IN.SRV.SRV)]
    return sorted(records, key=lambda record: (record.priority, -record.weight))


def _addresses(dns_resolver: dns.resolver.Resolver, name: str) -> list[str]:
    found: list[str] = []
    for kind in ("A", "AAAA"):
        try:
            answer = dns_resolver.resolve(name, kind, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return []
        found += [record.to_text() for record in answer]
    return found


def _dns_reason(problem: dns.exception.DNSException) -> str:
    if isinstance(problem, dns.exception.Timeout):
        return f"no answer within {DNS_LIFETIME_SECONDS:g} s"
    return str(problem) or type(problem).__name__


# --- database ----------------------------------------------------------------------------


def database_findings(url: str) -> Iterator[Finding]:
    from sqlalchemy.engine import make_url

    from chinwag.store.db import redacted

    shown = redacted(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "")
        if not path.exists():
            yield ok("database", f"{shown} is not made yet: chinwag serve creates it")
            return
    try:
        current, newest, known = asyncio.run(_revisions(url))
    except TimeoutError:
        yield error("database", f"{shown} did not answer within {DATABASE_TIMEOUT_SECONDS:g} s")
        return
    except Exception as problem:  # any driver's failure to connect is a finding, not a crash
        reason = str(getattr(problem, "orig", None) or problem).splitlines()
        yield error(
            "database", f"cannot reach {shown}: {reason[0] if reason else type(problem).__name__}"
        )
        return
    yield from _schema_findings(shown, current, newest, known)


def _schema_findings(
    shown: str, current: set[str], newest: set[str], known: set[str]
) -> Iterator[Finding]:
    at = ", ".join(sorted(current))
    if not current:
        yield ok("database", f"{shown} is reachable and empty: chinwag serve creates the schema")
    elif current == newest:
        yield ok("database", f"{shown} is reachable, its schema at the newest revision ({at})")
    elif current <= known:
        yield warning(
            "database",
            f"{shown} is at revision {at}, older than this chinwag's "
            f"{', '.join(sorted(newest))}: chinwag serve migrates it at start (back it up first)",
        )
    else:
        yield error(
            "database",
            f"{shown} is at revision {at}, which this chinwag does not know: "
            "a newer chinwag made it",
        )


async def _revisions(url: str) -> tuple[set[str], set[str], set[str]]:
    """The database's current revisions, and this chinwag's newest and every known one."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import create_async_engine

    from chinwag.store.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    script = ScriptDirectory.from_config(config)
    engine = create_async_engine(url)
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS), engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: set(MigrationContext.configure(sync).get_current_heads())
            )
    finally:
        await engine.dispose()
    known = {revision.revision for revision in script.walk_revisions()}
    return current, set(script.get_heads()), known


# --- ports -------------------------------------------------------------------------------


def port_findings(settings: Settings) -> Iterator[Finding]:
    c2s, http = settings.c2s, settings.http
    listeners = [
        ("c2s", c2s.host, c2s.port),
        ("direct_tls", c2s.host, c2s.direct_tls_port),
        ("http", http.host, http.port),
    ]
    served, pid = _served_ports(settings)
    seen: dict[int, str] = {}
    for name, host, port in listeners:
        where = f"{name} {host or '*'}:{port}"
        if port == 0:
            yield ok("ports", f"{name} {host or '*'}: any free port (port 0)")
        elif port in seen:
            yield error("ports", f"{name} and {seen[port]} both use port {port}")
        elif served.get(name) == port:
            yield ok("ports", f"{where}: served by the running chinwag (pid {pid})")
        else:
            yield _bind_finding(where, host, port)
        seen.setdefault(port, name)


def _served_ports(settings: Settings) -> tuple[dict[str, int], int | None]:
    """The ports of the running chinwag of these settings by listener, and its pid."""
    from chinwag.web.admin_routes import STATUS_PATH

    try:
        status = ask_server(settings, "GET", STATUS_PATH, timeout=STATUS_TIMEOUT_SECONDS)
        ports = {listener["name"]: listener["port"] for listener in status["listeners"]}
        return ports, status["pid"]
    except (ServerProblem, KeyError, TypeError):
        return {}, None


def _bind_finding(where: str, host: str, port: int) -> Finding:
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, _kind, _proto, _name, address in dict.fromkeys(addresses):
            socket.create_server(address, family=family).close()
    except socket.gaierror as problem:
        return error("ports", f"{where}: cannot resolve {host}: {problem.strerror}")
    except OSError as problem:
        return error("ports", f"{where}: {_bind_problem(problem, host)}")
    return ok("ports", f"{where}: free")


def _bind_problem(problem: OSError, host: str) -> str:
    if problem.errno == errno.EADDRINUSE:
        return "in use by another program (or a chinwag of another configuration)"
    if problem.errno == errno.EACCES:
        return "not allowed (ports below 1024 need privileges)"
    if problem.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine"
    return f"cannot listen: {problem.strerror or problem}"
