"""Start, stop and provision the servers under test: chinwag, Prosody and ejabberd.

Each server runs as the current user, from its own temporary directory, with a
generated minimal configuration: domain ``localhost``, one c2s listener on a free
loopback port, plaintext c2s allowed with SASL PLAIN (STARTTLS offered, not
required), internal storage, no archiving (but chinwag's with ``--archive``), carbons
or rate limits, stream
management only when the clients use it (``--sm``), and offline storage only where
the ``offline`` scenario asks for it. All
three hold the same users (u0, u1, ... with one password, verified against SCRAM
credentials of 4096 iterations) and the same contacts (u0-u1, u2-u3, ...), and use
the same kind of self-signed certificate (EC P-256).

Servers are never started through their system service units. ``start`` launches
one as a child in its own process group and waits until its port accepts;
``stop`` sends SIGTERM, waits, and kills whatever of its process group is left.
Every process started here is also stopped at interpreter exit. A server whose
binary is missing reports itself unavailable and is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import hmac
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, ClassVar

from bench.loadgen import DOMAIN, HOST, PASSWORD, ProcessTree, Target, contact_pairs, user_name

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
PROVISION_TIMEOUT_S = 1800.0
SCRAM_ITERATIONS = 4096
FD_LIMIT_WANTED = 65536


class ServerError(Exception):
    """A server could not be provisioned, started or stopped."""


# --- Shared helpers ----------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """One self-signed certificate for every server: PEM cert, key, and both in one."""

    cert: Path
    key: Path
    combined: Path


def make_certificate(directory: Path, domain: str = DOMAIN) -> TlsFiles:
    """A self-signed EC P-256 certificate for ``domain``, the kind chinwag generates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", directory / "combined.pem")
    files.cert.write_bytes(cert_pem)
    files.key.write_bytes(key_pem)
    files.combined.write_bytes(cert_pem + key_pem)
    return files


def free_port() -> int:
    """A TCP port free on the loopback address right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def package_version(package: str) -> str:
    """The installed Debian package's version, or "unknown"."""
    if shutil.which("dpkg-query") is None:
        return "unknown"
    found = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return found.stdout.strip() or "unknown"


def _raise_child_fd_limit() -> None:
    """In the child before exec: as many open files as the hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_LIMIT_WANTED if hard == resource.RLIM_INFINITY else min(FD_LIMIT_WANTED, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# --- Server processes --------------------------------------------------------------

_RUNNING: set[ServerProcess] = set()


class ServerProcess:
    """A server started as a child, in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_name: str = "server.log",
    ) -> None:
        self.name = name
        self.log_path = cwd / log_name
        self._log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_raise_child_fd_limit,
        )
        _RUNNING.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_port(self, port: int, timeout: float) -> None:
        """Return once ``port`` accepts; raise if the server exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with status {self.popen.returncode}:\n{self.log_tail()}"
                )
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise ServerError(f"{self.name} did not listen on {port} within {timeout} s")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM and wait; then SIGKILL to whatever of its process group is left."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.popen.wait(10)
        self._kill_group()
        self._log.close()
        _RUNNING.discard(self)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # our own group: pgid == our child's pid

    def log_tail(self, lines: int = 25) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@atexit.register
def stop_all() -> None:
    """Stop every server still running: nothing started here outlives the bench."""
    for process in list(_RUNNING):
        process.stop(timeout=10)


def group_alive(pid: int) -> bool:
    """Whether any process of the group that ``pid`` led is still alive."""
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --- The servers -------------------------------------------------------------------


@dataclass(frozen=True)
class Backends:
    """The Redis and PostgreSQL that chinwag's cluster setups use (``bench/clusters.py``);
    the other servers need neither."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    """Any database of the server: each run creates a database of its own beside it."""


class BenchServer(ABC):
    """One server under test, in its own working directory, on its own loopback port."""

    name: ClassVar[str]

    def __init__(self, workdir: Path, tls: TlsFiles, backends: Backends | None = None) -> None:
        """``backends`` matter only to the setups that use them (``bench/clusters.py``)."""
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.port = free_port()
        self.warnings: list[str] = []
        self._process: ServerProcess | None = None
        self._last_pid = 0

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether the server is installed here."""

    @classmethod
    @abstractmethod
    def version(cls) -> str: ...

    @classmethod
    def unavailable(cls, backends: Backends) -> str | None:
        """Why the server cannot run here (not installed, a backend unreachable), or None."""
        return None if cls.available() else "not installed"

    @abstractmethod
    def provision(self, users: int) -> None:
        """Create users u0..u{users-1} and the contact pairs among them."""

    @abstractmethod
    def _launch(
        self, *, offline: bool, sm: bool, archive: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        """Write the configuration; return the command line and environment."""

    def start(self, *, offline: bool = False, sm: bool = False, archive: bool = False) -> Target:
        """Start the server (offline storage on or off, stream management offered or
        not, archiving on or off where it can) and wait until it listens."""
        self.launch(offline=offline, sm=sm, archive=archive)
        return self.wait_until_listening()

    def launch(self, *, offline: bool = False, sm: bool = False, archive: bool = False) -> None:
        """Start the server's process, without waiting for it."""
        if self._process is not None:
            raise ServerError(f"{self.name} is already running")
        args, env = self._launch(offline=offline, sm=sm, archive=archive)
        self._process = ServerProcess(self.name, args, cwd=self.workdir, env=env)
        self._last_pid = self._process.pid

    def wait_until_listening(self) -> Target:
        """Once the launched server accepts connections, the target it is; stopped if
        it does not."""
        if self._process is None:
            raise ServerError(f"{self.name} was not launched")
        try:
            self._process.wait_for_port(self.port, START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return Target(self.name, HOST, self.port, DOMAIN, ProcessTree(self._process.pid))

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    @property
    def pid(self) -> int:
        """The process started last (0 before the first start)."""
        return self._last_pid

    def left_running(self) -> bool:
        """Whether anything this server started is still alive after ``stop``."""
        return bool(self._last_pid) and group_alive(self._last_pid)

    def close(self) -> None:  # noqa: B027 (most servers keep nothing elsewhere)
        """Once stopped for good: remove what it keeps outside its working directory."""

    def log_tail(self) -> str:
        log = self.workdir / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-25:]) if log.exists() else ""


def _environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def _run(args: list[str], what: str, *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a provisioning command to completion; raise ServerError with its output."""
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=PROVISION_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise ServerError(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{a},{b}\n" for a, b in rows))
    return path


def _users(count: int) -> list[str]:
    return [user_name(i) for i in range(count)]


class Chinwag(BenchServer):
    """chinwag from this checkout: ``chinwag serve`` with a generated TOML file."""

    name = "chinwag"

    def __init__(self, workdir: Path, tls: TlsFiles, backends: Backends | None = None) -> None:
        super().__init__(workdir, tls, backends)
        self.config = self.workdir / "chinwag.toml"
        self.from_strangers = False
        self.archive = False
        """Whether it archives messages (XEP-0313); off, as the other servers are run."""
        self._extra_ports = (free_port(), free_port())
        self.write_config()

    @staticmethod
    def executable() -> str | None:
        beside = Path(sys.executable).with_name("chinwag")
        return str(beside) if beside.exists() else shutil.which("chinwag")

    @classmethod
    def available(cls) -> bool:
        return cls.executable() is not None

    @classmethod
    def version(cls) -> str:
        try:
            return importlib.metadata.version("chinwag")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def provision(self, users: int) -> None:
        names = _users(users)
        csv = _write_csv(self.workdir / "users.csv", [(name, PASSWORD) for name in names])
        if self._has_command("db", "migrate"):
            self._cli("db", "migrate")  # only it and serve make a new database
        self._cli("user", "import", str(csv))
        pairs = _write_csv(self.workdir / "contacts.csv", contact_pairs(users))
        if self._has_command("contacts", "import"):
            self._cli("contacts", "import", str(pairs))
            return
        self.from_strangers = True
        self.write_config()
        self.warnings.append(
            "chinwag has no 'contacts import' command yet: its users are NOT contacts, and "
            "messages.from_strangers = true lets them message each other instead"
        )

    def _launch(
        self, *, offline: bool, sm: bool, archive: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        # chinwag always stores offline messages and offers stream management; the
        # routing scenarios send no message to offline users, and stream management
        # costs nothing to a client that does not enable it, so the switches only
        # matter to the other servers. Archiving is off unless asked for, as elsewhere.
        self.archive = archive
        self.write_config()
        return [self._exe(), "serve", "--config", str(self.config)], _environment()

    def _exe(self) -> str:
        exe = self.executable()
        if exe is None:
            raise ServerError("the chinwag command is not installed")
        return exe

    def _cli(self, *args: str) -> str:
        command = [self._exe(), *args, "--config", str(self.config)]
        return _run(command, f"chinwag {' '.join(args[:2])}", cwd=self.workdir)

    def _has_command(self, *words: str) -> bool:
        probe = subprocess.run(
            [self._exe(), *words, "--help"], capture_output=True, check=False, timeout=60
        )
        return probe.returncode == 0

    def write_config(self) -> None:
        self.config.write_text(self.config_text(self.port, *self._extra_ports))

    def config_text(self, port: int, direct_tls_port: int, http_port: int) -> str:
        """The TOML of a server listening on these ports."""
        text = f"""# generated by bench/servers.py for loopback benchmarks
domain = {json.dumps(DOMAIN)}
data_dir = {json.dumps(str(self.workdir / "data"))}

[c2s]
host = {json.dumps(HOST)}
port = {port}
direct_tls_port = {direct_tls_port}
require_tls = false

[http]
host = {json.dumps(HOST)}
port = {http_port}

[tls]
cert = {json.dumps(str(self.tls.cert))}
key = {json.dumps(str(self.tls.key))}

[limits]
keepalive_seconds = 0
stanzas_per_second = 0
bytes_per_second = 0

[archive]
enabled = {json.dumps(self.archive)}
"""
        if self.from_strangers:
            text += "\n[messages]\nfrom_strangers = true\n"
        return text


def _lua(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scram_sha1(password: str, salt: str, iterations: int) -> tuple[str, str]:
    """(stored_key, server_key) in hex, as Prosody's internal_hashed stores them."""
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha1).digest()
    return hashlib.sha1(client_key).hexdigest(), server_key.hex()


class Prosody(BenchServer):
    """Prosody (Debian package), foreground, with its data written directly to disk."""

    name = "prosody"

    @classmethod
    def available(cls) -> bool:
        return shutil.which("prosody") is not None

    @classmethod
    def version(cls) -> str:
        return package_version("prosody")

    def provision(self, users: int) -> None:
        host_dir = self.workdir / "data" / DOMAIN  # datamanager leaves "localhost" as is
        accounts, rosters = host_dir / "accounts", host_dir / "roster"
        accounts.mkdir(parents=True, exist_ok=True)
        rosters.mkdir(parents=True, exist_ok=True)
        salt = secrets.token_hex(16)
        account = self._account_file(salt, *scram_sha1(PASSWORD, salt, SCRAM_ITERATIONS))
        for index, name in enumerate(_users(users)):
            (accounts / f"{name}.dat").write_text(account)
            contact = user_name(index ^ 1) if (index ^ 1) < users else None
            (rosters / f"{name}.dat").write_text(self._roster_file(contact))

    @staticmethod
    def _account_file(salt: str, stored_key: str, server_key: str) -> str:
        return (
            "return {\n"
            f'\t["iteration_count"] = {SCRAM_ITERATIONS};\n'
            f'\t["salt"] = {_lua(salt)};\n'
            f'\t["stored_key"] = {_lua(stored_key)};\n'
            f'\t["server_key"] = {_lua(server_key)};\n'
            "};\n"
        )

    @staticmethod
    def _roster_file(contact: str | None) -> str:
        lines = ['\t[false] = { ["version"] = 1; ["pending"] = {}; };']
        if contact is not None:
            jid = _lua(f"{contact}@{DOMAIN}")
            lines.append(f'\t[{jid}] = {{ ["subscription"] = "both"; ["groups"] = {{}}; }};')
        return "return {\n" + "\n".join(lines) + "\n};\n"

    def _launch(
        self, *, offline: bool, sm: bool, archive: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        config = self.workdir / "prosody.cfg.lua"
        config.write_text(self._config(offline, sm))
        prosody = shutil.which("prosody")
        if prosody is None:
            raise ServerError("prosody is not installed")
        return [prosody, "-F", "--config", str(config)], _environment()

    def _config(self, offline: bool, sm: bool) -> str:
        disabled = ["s2s", "s2s_auth_certs"] + ([] if offline else ["offline"])
        enabled = ["roster", "saslauth", "tls", "disco", "ping"] + (["smacks"] if sm else [])
        return f"""-- generated by bench/servers.py: a minimal Prosody for loopback benchmarks
daemonize = false
run_as_root = true
pidfile = {_lua(str(self.workdir / "prosody.pid"))}
data_path = {_lua(str(self.workdir / "data"))}
plugin_paths = {{ }}
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = {_lua(str(self.workdir / "prosody.log"))} }} }}
interfaces = {{ "{HOST}" }}
local_interfaces = {{ "{HOST}" }}
c2s_interfaces = {{ "{HOST}" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ {"; ".join(_lua(m) for m in enabled)}; }}
modules_disabled = {{ {"; ".join(_lua(m) for m in disabled)}; }}
authentication = "internal_hashed"
default_iteration_count = {SCRAM_ITERATIONS}
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
ssl = {{ certificate = {_lua(str(self.tls.cert))}; key = {_lua(str(self.tls.key))}; }}

VirtualHost "{DOMAIN}"
"""


@functools.cache
def _ejabberd_beams() -> list[Path]:
    """ejabberd.beam of the installed package: from its file list, else from the
    ERL_LIBS its ejabberdctl script sets."""
    if shutil.which("dpkg-query"):
        listed = subprocess.run(
            ["dpkg-query", "-L", "ejabberd"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.split()
        beams = [Path(name) for name in listed if name.endswith("/ebin/ejabberd.beam")]
        if beams:
            return beams
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    ctl = shutil.which("ejabberdctl", path=search)
    found = ctl and re.search(r"^ERL_LIBS='?([^'\n]+)'?", Path(ctl).read_text(), re.MULTILINE)
    return sorted(Path(found.group(1)).glob("ejabberd-*/ebin/ejabberd.beam")) if found else []


class Ejabberd(BenchServer):
    """ejabberd (Debian package) run straight from ``erl``, as ejabberdctl would, but as
    the current user, with a unique node name and no epmd: the node listens for
    distribution on its own loopback port, which the provisioning node dials."""

    name = "ejabberd"

    def __init__(self, workdir: Path, tls: TlsFiles, backends: Backends | None = None) -> None:
        super().__init__(workdir, tls, backends)
        self.node = f"bench{secrets.token_hex(4)}@localhost"
        self.cookie = secrets.token_hex(16)
        self.dist_port = free_port()
        self.spool = self.workdir / "spool"
        self.spool.mkdir(exist_ok=True)

    @staticmethod
    def erl_libs() -> str | None:
        """Where the packaged ejabberd's applications live (ejabberdctl's ERL_LIBS)."""
        beams = _ejabberd_beams()
        return str(beams[0].parents[2]) if beams else None  # LIBS/ejabberd-V/ebin/x.beam

    @classmethod
    def available(cls) -> bool:
        return shutil.which("erl") is not None and cls.erl_libs() is not None

    @classmethod
    def version(cls) -> str:
        return package_version("ejabberd")

    def provision(self, users: int) -> None:
        self.start(offline=False)
        try:
            self.register(users)
        finally:
            self.stop()

    def register(self, users: int) -> None:
        """On the running node: register the users and their contact pairs."""
        terms = self.workdir / "provision.terms"
        users_term = ",".join(f'{{<<"{n}">>,<<"{PASSWORD}">>}}' for n in _users(users))
        pairs_term = ",".join(f'{{<<"{a}">>,<<"{b}">>}}' for a, b in contact_pairs(users))
        terms.write_text(f"[{users_term}].\n[{pairs_term}].\n")
        args = [*self._erl_node(self.control_node()), "-dist_listen", "false", "-hidden"]
        args += ["-noinput", "-eval", self._provision_code(terms)]
        _run(args, "ejabberd provisioning", cwd=self.workdir, env=self._env())

    @staticmethod
    def control_node() -> str:
        """A fresh name for a short-lived node that drives the server, as ejabberdctl's."""
        return f"ctl{secrets.token_hex(3)}@localhost"

    def _provision_code(self, terms: Path) -> str:
        """Erlang for the provisioning node: register every user and add both roster
        items of every pair, in four parallel batches run on the server's node."""
        return f"""
Node = '{self.node}', Host = <<"{DOMAIN}">>,
{{ok, [Users, Pairs]}} = file:consult("{terms}"),
pong = net_adm:ping(Node),
Split = fun Split([], _) -> []; Split(L, N) when length(L) =< N -> [L];
            Split(L, N) -> {{A, B}} = lists:split(N, L), [A | Split(B, N)] end,
Batches = fun(F, List) ->
    Keys = [rpc:async_call(Node, lists, map, [F, C]) || C <- Split(List, 1 + length(List) div 4)],
    lists:append([case rpc:yield(K) of R when is_list(R) -> R; Bad -> [Bad] end || K <- Keys])
end,
Register = fun({{U, P}}) -> ejabberd_auth:try_register(U, Host, P) end,
Item = fun(A, B) -> mod_admin_extra:add_rosteritem(A, Host, B, Host, B, <<"bench">>, <<"both">>) end,
Befriend = fun({{A, B}}) -> {{Item(A, B), Item(B, A)}} end,
BadUsers = [R || R <- Batches(Register, Users), R =/= ok],
BadPairs = [R || R <- Batches(Befriend, Pairs), R =/= {{ok, ok}}],
io:format("~p users, ~p failed; ~p pairs, ~p failed: ~p~n",
          [length(Users), length(BadUsers), length(Pairs), length(BadPairs),
           lists:sublist(BadUsers ++ BadPairs, 3)]),
halt(case BadUsers ++ BadPairs of [] -> 0; _ -> 1 end).
"""

    def _erl_node(self, node: str) -> list[str]:
        erl = shutil.which("erl")
        if erl is None:
            raise ServerError("erl is not installed")
        return [
            erl,
            "-sname",
            node,
            "-setcookie",
            self.cookie,
            "-erl_epmd_port",
            str(self.dist_port),
            "-start_epmd",
            "false",
        ]

    def _env(self) -> dict[str, str]:
        libs = self.erl_libs()
        if libs is None:
            raise ServerError("the ejabberd package is not installed")
        return _environment(
            HOME=str(self.workdir),
            ERL_LIBS=libs,
            EJABBERD_CONFIG_PATH=str(self.workdir / "ejabberd.yml"),
            EJABBERD_LOG_PATH=str(self.workdir / "ejabberd.log"),
            ERL_CRASH_DUMP=str(self.workdir / "erl_crash.dump"),
            ERL_MAX_PORTS=str(FD_LIMIT_WANTED),
            ERL_EPMD_ADDRESS=HOST,
        )

    def _launch(
        self, *, offline: bool, sm: bool, archive: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        (self.workdir / "ejabberd.yml").write_text(self._config(offline, sm))
        args = [
            *self._erl_node(self.node),
            "-kernel",
            "inet_dist_use_interface",
            "{127,0,0,1}",
            "+P",
            "1000000",
            "+Q",
            str(FD_LIMIT_WANTED),
            "-env",
            "ERL_CRASH_DUMP_BYTES",
            "0",
            "-mnesia",
            "dir",
            f'"{self.spool}"',
            "-noinput",
            "-s",
            "ejabberd",
        ]
        return args, self._env()

    def _config(self, offline: bool, sm: bool) -> str:
        offline_module = (
            "  mod_offline:\n    access_max_user_messages: max_user_offline_messages\n"
            if offline
            else ""
        )
        sm_module = "  mod_stream_mgmt: {}\n" if sm else ""
        return f"""# generated by bench/servers.py: a minimal ejabberd for loopback benchmarks
hosts:
  - "{DOMAIN}"
loglevel: warning
log_rotate_count: 0
certfiles:
  - "{self.tls.combined}"
listen:
  -
    port: {self.port}
    ip: "{HOST}"
    module: ejabberd_c2s
    backlog: 128
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls: true
    starttls_required: false
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
default_db: mnesia
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 1000000
modules:
  mod_roster:
    versioning: false
  mod_disco: {{}}
  mod_ping: {{}}
{offline_module}{sm_module}"""


SERVERS: dict[str, type[BenchServer]] = {
    "chinwag": Chinwag,
    "prosody": Prosody,
    "ejabberd": Ejabberd,
}
