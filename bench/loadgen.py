"""The load generator: a minimal XMPP client written for speed, and the scenarios.

One process drives every connection from one event loop (uvloop when installed).
Each connection is an ``asyncio.Protocol`` with its own pyexpat parser that builds
only top-level elements; replies produced while a read is parsed are written to the
socket in one call at the end of that read. The client knows exactly what the
benchmark needs: the stream header, optional STARTTLS (a context that does not
verify), SASL PLAIN, resource binding, the legacy session when a server requires
it, initial presence, XEP-0199 ping, and chat messages whose body carries their
send time (``t=<monotonic_ns>``), so that latency is read from the message itself.
With ``Params.sm`` every client also enables XEP-0198 stream management (with
resumption) after binding: it counts the stanzas it receives and answers each
``<r/>`` with ``<a h/>``, asks for an acknowledgement after every
``SM_REQUEST_EVERY`` stanzas it sends, checks each ``<a/>`` it gets back, and before
closing asks once more and requires every stanza it sent to be acknowledged.

Every scenario is bounded in count and in time, counts undelivered messages and
errors, and measures the generator's own CPU next to the server's (summed over the
server's process tree, from /proc).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import resource
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from xml.parsers import expat

DOMAIN = "localhost"
HOST = "127.0.0.1"
PASSWORD = "bench-secret-1"
RESOURCE = "bench"
SCENARIOS = ("login", "login-tls", "idle", "msg-sat", "msg-rate", "offline")

HIGHER = "higher"
LOWER = "lower"

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
NS_PER_MS = 1_000_000

_ids = itertools.count(1)


# --- Users -------------------------------------------------------------------------


def user_name(index: int) -> str:
    """The username of bench user ``index``: u0, u1, ..."""
    return f"u{index}"


def partner(index: int) -> int:
    """Users are paired 0-1, 2-3, ...: each pair are contacts and message each other."""
    return index ^ 1


def contact_pairs(users: int) -> list[tuple[str, str]]:
    """The contact pairs among the first ``users`` users."""
    return [(user_name(i), user_name(i + 1)) for i in range(0, users - 1, 2)]


# --- Parameters --------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """Counts and durations of every scenario; each scenario is bounded by them."""

    login_users: int = 2000
    idle_users: int = 10000
    handshakes_in_flight: int = 100
    msg_users: int = 1000
    msg_in_flight: int = 4
    rate_users: int = 1000
    rate_per_s: float = 2000.0
    warmup_s: float = 5.0
    measure_s: float = 30.0
    offline_pairs: int = 1000
    offline_per_pair: int = 10
    settle_s: float = 2.0
    settle_limit_s: float = 15.0
    step_timeout_s: float = 30.0
    drain_timeout_s: float = 15.0
    scenario_timeout_s: float = 900.0
    sm: bool = False
    """Every client enables XEP-0198 stream management after binding."""
    archive: bool = False
    """chinwag archives every message (XEP-0313); the other servers never do."""

    def users_for(self, scenario: str) -> int:
        """How many provisioned users ``scenario`` signs in (always an even number)."""
        counts = {
            "login": self.login_users,
            "login-tls": self.login_users,
            "idle": self.idle_users,
            "msg-sat": self.msg_users,
            "msg-rate": self.rate_users,
            "offline": 2 * self.offline_pairs,
        }
        return _even(counts[scenario])

    def users_needed(self, scenarios: Iterable[str]) -> int:
        return max((self.users_for(name) for name in scenarios), default=0)


FULL = Params()
SMOKE = Params(
    login_users=50,
    idle_users=200,
    msg_users=20,
    rate_users=20,
    rate_per_s=200.0,
    warmup_s=0.5,
    measure_s=2.0,
    offline_pairs=10,
    offline_per_pair=5,
    settle_s=0.3,
    settle_limit_s=3.0,
    step_timeout_s=10.0,
    drain_timeout_s=5.0,
    scenario_timeout_s=30.0,
)


def _even(count: int) -> int:
    return count + (count % 2)


# --- Measuring processes -----------------------------------------------------------


class ProcessTree:
    """A server's processes, read from /proc: the ones started (one per node of a
    cluster) and all their descendants."""

    def __init__(self, *roots: int) -> None:
        self.roots = roots
        self._pids: list[int] = []
        self._listed_at = -1.0

    def pids(self, max_age: float = 1.0) -> list[int]:
        """The live pids of the tree; the listing is reused for ``max_age`` seconds."""
        now = time.monotonic()
        if now - self._listed_at > max_age:
            self._pids = self._list()
            self._listed_at = now
        return self._pids

    def rss_kib(self) -> int:
        """Resident memory summed over every process of the tree."""
        return sum(_rss_kib(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        """User plus system CPU time summed over every live process of the tree."""
        return sum(_cpu_ticks(pid) for pid in self.pids(max_age=0.0)) / CLOCK_TICKS

    def _list(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (stat := _stat_fields(int(entry.name))):
                children.setdefault(int(stat[1]), []).append(int(entry.name))
        found, queue = [], list(self.roots)
        while queue:
            pid = queue.pop()
            found.append(pid)
            queue.extend(children.get(pid, ()))
        return [pid for pid in found if os.path.exists(f"/proc/{pid}")]


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rpartition(b")")[2].split()
    except OSError:
        return None


def _cpu_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0  # utime + stime


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class CpuUse:
    """CPU over a window, in % of one core: the server's tree, this generator, the
    Redis a cluster's nodes share (0 for other servers), everything else on the machine (other work skews a comparison), and the time the
    hypervisor of a virtual machine gave its cores to other guests (steal time, which
    slows everything here as much)."""

    server: float = 0.0
    generator: float = 0.0
    others: float = 0.0
    stolen: float = 0.0
    redis: float = 0.0


RedisClock = Callable[[], float]
"""CPU seconds the Redis of a cluster has used since it started."""


class CpuMeter:
    """Measures CpuUse between ``start`` and ``stop``."""

    def __init__(self, tree: ProcessTree, redis: RedisClock | None = None) -> None:
        self.tree = tree
        self.redis = redis
        self._start = (0.0, 0.0, 0.0, 0.0, MachineTime())

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> CpuUse:
        wall0, server0, gen0, redis0, machine0 = self._start
        wall1, server1, gen1, redis1, machine1 = self._now()
        wall = max(wall1 - wall0, 1e-9)
        server, generator, redis = server1 - server0, gen1 - gen0, redis1 - redis0
        others = max(machine1.busy - machine0.busy - server - generator - redis, 0.0)
        stolen = max(machine1.stolen - machine0.stolen, 0.0)
        return CpuUse(
            *(100 * seconds / wall for seconds in (server, generator, others, stolen, redis))
        )

    def _now(self) -> tuple[float, float, float, float, MachineTime]:
        redis = self.redis() if self.redis is not None else 0.0
        return (
            time.monotonic(),
            self.tree.cpu_seconds(),
            time.process_time(),
            redis,
            machine_time(),
        )


@dataclass(frozen=True)
class MachineTime:
    """CPU seconds of the whole machine since it booted: spent busy (all but idle,
    iowait and steal), and stolen by the hypervisor."""

    busy: float = 0.0
    stolen: float = 0.0


def machine_time(stat_line: bytes | None = None) -> MachineTime:
    """MachineTime from the ``cpu`` line of ``/proc/stat`` (read when not given);
    zeros where it cannot be read."""
    try:
        if stat_line is None:
            with open("/proc/stat", "rb") as file:
                stat_line = file.readline()
        fields = [int(v) for v in stat_line.split()[1:]] + [0] * 8
    except (OSError, ValueError):
        return MachineTime()
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    # guest time is already counted in user time
    return MachineTime((user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS)


class RssSampler:
    """Samples the server tree's RSS every ``interval`` seconds and keeps the peak."""

    def __init__(self, tree: ProcessTree, interval: float = 0.1) -> None:
        self.tree = tree
        self.interval = interval
        self.peak_kib = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sample()
        return self.peak_kib

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)

    def _sample(self) -> None:
        self.peak_kib = max(self.peak_kib, self.tree.rss_kib())


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit to ``wanted`` if allowed; servers started
    afterwards inherit it. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


# --- The client --------------------------------------------------------------------


class Node:
    """One element as the client sees it: tag (prefixed, unresolved), attrs, children, text."""

    __slots__ = ("attrs", "children", "tag", "text")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[Node] = []
        self.text = ""

    def child(self, local: str) -> Node | None:
        for node in self.children:
            if local_name(node.tag) == local:
                return node
        return None

    def describe(self) -> str:
        """The tag, attributes and children (with an error's condition), for reports."""
        inner = " ".join(_child_summary(child) for child in self.children)
        attrs = " ".join(f"{k}='{v}'" for k, v in self.attrs.items() if k != "xmlns")
        return f"<{self.tag} {attrs}> {inner}"


def _child_summary(node: Node) -> str:
    name = local_name(node.tag)
    if name == "error" and node.children:
        return f"error({', '.join(local_name(c.tag) for c in node.children)})"
    return name


def local_name(tag: str) -> str:
    return tag.rpartition(":")[2]


def body_time(node: Node) -> int | None:
    """The send time a bench message carries in its body, or None."""
    for child in node.children:
        if child.tag == "body" and child.text.startswith("t="):
            try:
                return int(child.text[2:])
            except ValueError:
                return None
    return None


class Stats:
    """Errors seen by the clients of a scenario, the first few of them described."""

    def __init__(self) -> None:
        self.errors = 0
        self.samples: list[str] = []
        self.sm_counts: dict[str, int] = {}

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 10:
            self.samples.append(what)

    def count_sm(self, sm: StreamManagement) -> None:
        """Add one client's stream management counters to the scenario's."""
        for name, value in (
            ("sm_sent", sm.sent),
            ("sm_acked", sm.acked),
            ("sm_received", sm.handled),
            ("sm_requests_answered", sm.answered),
        ):
            self.sm_counts[name] = self.sm_counts.get(name, 0) + value


class StreamManagement:
    """One client's XEP-0198 counters once the server has said ``<enabled/>``.

    ``handled`` counts the stanzas received (the client's h), ``sent`` the stanzas
    sent, ``acked`` the last h the server acknowledged; ``requested`` is ``sent`` when
    the client last asked for an acknowledgement. ``waiter`` waits for an
    acknowledgement of at least ``until`` stanzas.
    """

    __slots__ = ("acked", "answered", "handled", "requested", "sent", "until", "waiter")

    def __init__(self) -> None:
        self.handled = 0
        self.sent = 0
        self.acked = 0
        self.requested = 0
        self.answered = 0
        self.until = 0
        self.waiter: asyncio.Future[int] | None = None


class LoginError(Exception):
    """The server refused or broke a step of the handshake."""


MessageHandler = Callable[["Client", Node], None]

STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
)
AUTH = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
BIND = (
    "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    f"<resource>{RESOURCE}</resource></bind></iq>"
)
SESSION = "<iq type='set' id='session'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
CHAT = b"<message to='%s' type='chat' id='m%d'><body>t=%d</body></message>"
PRESENCE = b"<presence/>"

SM_NS = "urn:xmpp:sm:3"
SM_ENABLE = f"<enable xmlns='{SM_NS}' resume='true'/>".encode()
SM_REQUEST = f"<r xmlns='{SM_NS}'/>".encode()
SM_ACK = f"<a xmlns='{SM_NS}' h='%d'/>".encode()
SM_REQUEST_EVERY = 5
"""Stanzas sent between two requests for an acknowledgement (slixmpp's default window)."""
SM_H_MODULO = 2**32
STANZA_TAGS = frozenset(("message", "presence", "iq"))


def insecure_tls_context() -> ssl.SSLContext:
    """A client context that accepts any certificate: the servers' are self-signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _ignore(_client: Client, _node: Node) -> None:
    return None


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")


class Client(asyncio.Protocol):
    """One bench user's connection: a handshake coroutine, then callbacks per stanza."""

    def __init__(
        self,
        index: int,
        domain: str,
        stats: Stats,
        on_message: MessageHandler | None = None,
        *,
        sm: bool = False,
    ) -> None:
        self.index = index
        self.user = user_name(index)
        self.domain = domain
        self.partner_jid = f"{user_name(partner(index))}@{domain}".encode()
        self.stats = stats
        self.on_message = on_message or _ignore
        self.transport: asyncio.Transport | None = None
        self.online = False
        self.closed = False
        self.wants_sm = sm
        self.sm: StreamManagement | None = None
        self._sm_enabling: StreamManagement | None = None
        self._closing = False
        self._queue: deque[Node] = deque()
        self._waiter: asyncio.Future[Node] | None = None
        self._iqs: dict[str, asyncio.Future[Node]] = {}
        self._out: list[bytes] = []
        self._receiving = False
        self._depth = 0
        self._stack: list[Node] = []
        self._parser = self._new_parser()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._receiving = True
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as error:
            self.stats.error(f"{self.user}: not well-formed XML from the server: {error}")
            self.abort()
        finally:
            self._receiving = False
            if self._out:
                out = b"".join(self._out)
                self._out.clear()
                self.send(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"connection lost: {exc}" if exc else "closed by the server")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        for future in self._iqs.values():
            if not future.done():
                future.set_exception(error)
        self._iqs.clear()
        sm = self.sm
        if sm is not None and sm.waiter is not None and not sm.waiter.done():
            sm.waiter.set_exception(error)
        if self.online and not self._closing:
            self.stats.error(f"{self.user}: {error}")

    # sending and closing

    def send(self, data: bytes) -> None:
        if self._receiving:
            self._out.append(data)
        elif not (self.closed or self._closing) and self.transport is not None:
            self.transport.write(data)

    def send_stanza(self, data: bytes) -> None:
        """Send one stanza; with stream management, count it and ask for an
        acknowledgement after every ``SM_REQUEST_EVERY``."""
        sm = self.sm
        if sm is None:
            self.send(data)
            return
        sm.sent += 1
        if sm.sent - sm.requested >= SM_REQUEST_EVERY:
            sm.requested = sm.sent
            self.send(data + SM_REQUEST)
        else:
            self.send(data)

    def send_chat(self) -> None:
        """One chat message to this user's partner, stamped with the time it is sent."""
        self.send_stanza(CHAT % (self.partner_jid, next(_ids), time.monotonic_ns()))

    def close(self) -> None:
        """End the stream politely, with stream management acknowledging what was
        received first (XEP-0198 section 4), lest the server take it for lost; does
        nothing twice."""
        if self.closed or self._closing or self.transport is None:
            return
        self._closing = True
        if self.sm is not None:
            self.transport.write(SM_ACK % (self.sm.handled % SM_H_MODULO))
        self.transport.write(b"</stream:stream>")
        self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    # the handshake

    async def sign_in(
        self, host: str, port: int, password: str, *, tls: bool, presence: bool = True
    ) -> None:
        """Connect, authenticate with PLAIN, bind, and send initial presence."""
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, host, port)
        features = await self._open_stream()
        if tls:
            features = await self._starttls(loop, features)
        await self._authenticate(features, password)
        features = await self._open_stream()
        await self._bind(features)
        if self.wants_sm:
            await self._enable_sm(features)
        self.online = True
        while self._queue:  # stanzas that came in with the bind result
            self._stanza(self._queue.popleft())
        if presence:
            self.send_stanza(PRESENCE)

    async def _open_stream(self) -> Node:
        self._parser = self._new_parser()
        self._queue.clear()
        self.send(STREAM_HEADER.format(domain=self.domain).encode())
        features = await self._next()
        if local_name(features.tag) != "features":
            raise LoginError(f"expected stream features, got {features.describe()}")
        return features

    async def _starttls(self, loop: asyncio.AbstractEventLoop, features: Node) -> Node:
        if features.child("starttls") is None:
            raise LoginError("the server offers no STARTTLS")
        self.send(STARTTLS)
        answer = await self._next()
        if local_name(answer.tag) != "proceed":
            raise LoginError(f"STARTTLS refused: {answer.describe()}")
        assert self.transport is not None
        self.transport = await loop.start_tls(  # type: ignore[assignment]
            self.transport, self, TLS_CONTEXT, server_hostname=self.domain
        )
        return await self._open_stream()

    async def _authenticate(self, features: Node, password: str) -> None:
        mechanisms = features.child("mechanisms")
        offered = {m.text.strip() for m in mechanisms.children} if mechanisms else set()
        if "PLAIN" not in offered:
            raise LoginError(f"the server offers no SASL PLAIN (offers {sorted(offered)})")
        token = base64.b64encode(f"\0{self.user}\0{password}".encode()).decode()
        self.send(AUTH.format(token=token).encode())
        answer = await self._next()
        if local_name(answer.tag) != "success":
            raise LoginError(f"SASL PLAIN failed: {answer.describe()}")

    async def _bind(self, features: Node) -> None:
        if features.child("bind") is None:
            raise LoginError("the server offers no resource binding")
        await self._handshake_iq(BIND)
        session = features.child("session")
        if session is not None and session.child("optional") is None:
            await self._handshake_iq(SESSION)

    async def _enable_sm(self, features: Node) -> None:
        """XEP-0198: enable stream management with resumption; counting starts with
        the ``<enabled/>`` (see ``_element``)."""
        if features.child("sm") is None:
            raise LoginError("the server offers no stream management (XEP-0198)")
        self._sm_enabling = StreamManagement()
        self.send(SM_ENABLE)
        early: list[Node] = []  # stanzas sent before <enabled/>: not counted
        while local_name((answer := await self._next()).tag) not in ("enabled", "failed"):
            early.append(answer)
        self._queue.extendleft(reversed(early))
        if local_name(answer.tag) == "failed":
            raise LoginError(f"stream management refused: {answer.describe()}")

    async def _handshake_iq(self, request: str) -> None:
        self.send(request.encode())
        answer = await self._next()
        if answer.tag != "iq" or answer.attrs.get("type") != "result":
            raise LoginError(f"{request[:40]}... failed: {answer.describe()}")

    async def _next(self) -> Node:
        """The next top-level element of the handshake."""
        if self._queue:
            return self._queue.popleft()
        if self.closed:
            raise ConnectionError("closed by the server")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    # requests once online

    async def ping(self, timeout: float) -> None:
        """XEP-0199 ping to the server; returns when it is answered."""
        iq_id = f"p{next(_ids)}"
        future: asyncio.Future[Node] = asyncio.get_running_loop().create_future()
        self._iqs[iq_id] = future
        self.send_stanza(
            f"<iq type='get' id='{iq_id}' to='{self.domain}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
        )
        try:
            answer = await asyncio.wait_for(future, timeout)
        finally:
            self._iqs.pop(iq_id, None)
        if answer.attrs.get("type") != "result":
            raise LoginError(f"ping failed: {answer.describe()}")

    async def confirm_acked(self, timeout: float) -> None:
        """Ask the server for an acknowledgement and require it to cover every stanza
        sent so far (XEP-0198 section 4)."""
        sm = self.sm
        if sm is None:
            raise LoginError("stream management is not enabled")
        sm.until = sm.sent
        sm.waiter = asyncio.get_running_loop().create_future()
        self.send(SM_REQUEST)
        try:
            await asyncio.wait_for(sm.waiter, timeout)
        finally:
            sm.waiter = None

    # parsing

    def _new_parser(self) -> expat.XMLParserType:
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        self._depth = 0
        self._stack = []
        return parser

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        self._depth += 1
        if self._depth == 1:
            return
        node = Node(tag, attrs)
        if self._stack:
            self._stack[-1].children.append(node)
        self._stack.append(node)

    def _end(self, _tag: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 1:
            self._stream_ended()
            return
        node = self._stack.pop()
        if depth == 2:
            self._element(node)

    def _text(self, text: str) -> None:
        if self._stack:
            self._stack[-1].text += text

    def _element(self, node: Node) -> None:
        sm = self.sm
        if sm is not None and self._stream_management(sm, node):
            return
        if self.online:
            self._stanza(node)
            return
        if self._sm_enabling is not None and local_name(node.tag) == "enabled":
            self.sm, self._sm_enabling = self._sm_enabling, None
        self._queue.append(node)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self._queue.popleft())

    def _stream_ended(self) -> None:
        if not self._closing:
            if self.online:
                self.stats.error(f"{self.user}: the server closed the stream")
            self.close()

    # stream management

    def _stream_management(self, sm: StreamManagement, node: Node) -> bool:
        """Count a stanza, or take an ``<r/>`` or ``<a/>``: then True."""
        tag = node.tag
        if tag in STANZA_TAGS:
            sm.handled += 1
            return False
        name = local_name(tag)
        if name == "r":
            sm.answered += 1
            self.send(SM_ACK % (sm.handled % SM_H_MODULO))
            return True
        if name == "a":
            self._acknowledged(sm, node)
            return True
        return False

    def _acknowledged(self, sm: StreamManagement, node: Node) -> None:
        """An ``<a h/>``: it may not go back, nor cover stanzas never sent."""
        try:
            acked = int(node.attrs.get("h", ""))
        except ValueError:
            self.stats.error(f"{self.user}: acknowledgement without a number: {node.describe()}")
            return
        if not sm.acked <= acked <= sm.sent:
            self.stats.error(
                f"{self.user}: the server acknowledged {acked} stanzas after {sm.acked}, "
                f"of {sm.sent} sent"
            )
            return
        sm.acked = acked
        waiter = sm.waiter
        if waiter is not None and acked >= sm.until and not waiter.done():
            waiter.set_result(acked)

    # stanzas once online

    def _stanza(self, node: Node) -> None:
        tag = node.tag
        if tag == "message":
            if node.attrs.get("type") == "error":
                self.stats.error(f"{self.user}: message bounced: {node.describe()}")
            else:
                self.on_message(self, node)
        elif tag == "iq":
            self._iq(node)
        elif tag == "presence":
            if node.attrs.get("type") == "error":
                self.stats.error(f"{self.user}: presence error: {node.describe()}")
        else:
            self.stats.error(f"{self.user}: unexpected {node.describe()}")

    def _iq(self, node: Node) -> None:
        attrs = node.attrs
        kind = attrs.get("type")
        if kind in ("result", "error"):
            future = self._iqs.pop(attrs.get("id", ""), None)
            if future is not None and not future.done():
                future.set_result(node)
        elif kind in ("get", "set"):  # a roster push or a server ping: acknowledge it
            to = f" to='{_xml_attr(attrs['from'])}'" if "from" in attrs else ""
            iq_id = _xml_attr(attrs.get("id", ""))
            self.send_stanza(f"<iq type='result' id='{iq_id}'{to}/>".encode())


TLS_CONTEXT = insecure_tls_context()


# --- Fleets of clients -------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A running server to load: where it listens, and which processes to measure.

    A cluster of several nodes lists each node's port in ``ports``: user ``i`` signs in
    to node ``i % len(ports)``, so with two nodes every user's partner (``i ^ 1``) is
    on the other node and every message crosses. ``redis_cpu`` reads the CPU time of
    the Redis the nodes share, measured beside the server's own."""

    name: str
    host: str
    port: int
    domain: str
    tree: ProcessTree
    ports: tuple[int, ...] = ()
    redis_cpu: RedisClock | None = None

    def port_for(self, index: int) -> int:
        """The port user ``index`` signs in to."""
        return self.ports[index % len(self.ports)] if self.ports else self.port


class Fleet:
    """The clients of one scenario, signed in with bounded concurrency and all closed."""

    def __init__(
        self,
        target: Target,
        params: Params,
        stats: Stats,
        on_message: MessageHandler | None = None,
    ) -> None:
        self.target = target
        self.params = params
        self.stats = stats
        self.on_message = on_message
        self.clients: list[Client] = []

    async def sign_in(
        self, indices: Iterable[int], *, tls: bool = False, presence: bool = True
    ) -> list[Client]:
        """Sign in every user of ``indices``, each ending with a ping answered, at most
        ``handshakes_in_flight`` at a time; returns those that made it."""
        gate = asyncio.Semaphore(self.params.handshakes_in_flight)
        signed = await asyncio.gather(*(self._one(i, gate, tls, presence) for i in indices))
        return [client for client in signed if client is not None]

    async def _one(
        self, index: int, gate: asyncio.Semaphore, tls: bool, presence: bool
    ) -> Client | None:
        async with gate:
            client = Client(
                index, self.target.domain, self.stats, self.on_message, sm=self.params.sm
            )
            self.clients.append(client)
            timeout = self.params.step_timeout_s
            try:
                async with asyncio.timeout(timeout):
                    await client.sign_in(
                        self.target.host,
                        self.target.port_for(index),
                        PASSWORD,
                        tls=tls,
                        presence=presence,
                    )
                await client.ping(timeout)
                return client
            except TimeoutError:
                self.stats.error(f"{client.user}: sign-in timed out after {timeout} s")
            except (OSError, LoginError, ssl.SSLError) as error:
                self.stats.error(f"{client.user}: sign-in failed: {error}")
            client.abort()
            return None

    async def close(self) -> None:
        """With stream management, first check that the server acknowledged every
        stanza each client sent; then end every stream."""
        if self.params.sm:
            await self._confirm_acked()
        for client in self.clients:
            client.close()
        if self.clients:
            await asyncio.sleep(0.2)  # let the stream closes reach the server
        for client in self.clients:
            client.abort()

    async def _confirm_acked(self) -> None:
        live = [c for c in self.clients if c.sm is not None and c.online and not c.closed]
        timeout = self.params.step_timeout_s
        answers = await asyncio.gather(
            *(client.confirm_acked(timeout) for client in live), return_exceptions=True
        )
        for client, answer in zip(live, answers, strict=True):
            if isinstance(answer, BaseException):
                self.stats.error(f"{client.user}: final acknowledgement: {answer!r}")
        for client in self.clients:
            if client.sm is not None:
                self.stats.count_sm(client.sm)


def paired(clients: list[Client]) -> list[Client]:
    """The clients whose partner is online too: only they may send to their partner."""
    online = {client.index for client in clients}
    return [client for client in clients if partner(client.index) in online]


# --- Results -----------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure; ``better`` says which way is good ("higher", "lower" or "")."""

    name: str
    value: float
    unit: str
    better: str = ""


@dataclass
class Result:
    """What one scenario measured against one server."""

    scenario: str
    figures: list[Figure] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, better: str = "") -> None:
        self.figures.append(Figure(name, value, unit, better))

    def absorb(self, stats: Stats) -> None:
        self.errors += stats.errors
        self.error_samples.extend(stats.samples[: 10 - len(self.error_samples)])
        for name, value in stats.sm_counts.items():
            self.counts[name] = self.counts.get(name, 0) + value

    @property
    def clean(self) -> bool:
        return self.undelivered == 0 and self.errors == 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Traffic:
    """Message counters shared by the clients of a message scenario."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.in_window = 0
        self.window_sent = 0
        self.measuring = False
        self.replying = True
        self.window_ns = (0, 0)
        self.latencies_ns: list[int] = []
        self.last_received = 0.0

    @property
    def undelivered(self) -> int:
        return self.sent - self.received

    async def drain(self, timeout: float) -> None:
        """Wait until every message sent has arrived, or until none has arrived for
        ``timeout`` seconds: what is missing then counts as undelivered."""
        seen, deadline = self.received, time.monotonic() + timeout
        while self.received < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if self.received != seen:
                seen, deadline = self.received, time.monotonic() + timeout


def percentile(sorted_values: list[int], fraction: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _add_cpu(result: Result, cpu: CpuUse, target: Target) -> None:
    result.add("server CPU", cpu.server, "% core", LOWER)
    if target.redis_cpu is not None:
        result.add("Redis CPU", cpu.redis, "% core")
    result.add("generator CPU", cpu.generator, "% core")
    result.add("other CPU", cpu.others, "% core")
    result.add("stolen CPU", cpu.stolen, "% core")


def cpu_per_message_us(cpu_percent: float, per_second: float) -> float:
    """Microseconds of CPU per message: % of a core over messages per second."""
    return cpu_percent * 10_000 / per_second if per_second else 0.0


# --- Scenarios ---------------------------------------------------------------------


async def scenario_login(target: Target, params: Params, *, tls: bool = False) -> Result:
    """Sign in ``login_users`` users, 100 handshakes at most in flight, each ending
    with a ping answered; sessions stay open until the end."""
    result = Result("login-tls" if tls else "login")
    stats = Stats()
    fleet = Fleet(target, params, stats)
    sampler, meter = RssSampler(target.tree), CpuMeter(target.tree, target.redis_cpu)
    try:
        sampler.start()
        meter.start()
        began = time.monotonic()
        clients = await fleet.sign_in(range(params.users_for(result.scenario)), tls=tls)
        elapsed = time.monotonic() - began
        cpu = meter.stop()
        peak = await sampler.stop()
        result.add("sessions/s", len(clients) / elapsed, "1/s", HIGHER)
        result.add("peak server RSS", peak / 1024, "MiB", LOWER)
        _add_cpu(result, cpu, target)
        result.counts["sessions"] = len(clients)
    finally:
        await sampler.stop()
        await fleet.close()
    result.absorb(stats)
    return result


async def scenario_idle(target: Target, params: Params) -> Result:
    """Hold ``idle_users`` authenticated sessions; memory per session, in KiB."""
    result = Result("idle")
    stats = Stats()
    fleet = Fleet(target, params, stats)
    try:
        fresh = target.tree.rss_kib()
        began = time.monotonic()
        clients = await fleet.sign_in(range(params.users_for("idle")))
        elapsed = time.monotonic() - began
        loaded = await settled_rss(target.tree, params.settle_s, params.settle_limit_s)
        alive = [client for client in clients if not client.closed]
        result.add("RSS per session", (loaded - fresh) / max(len(alive), 1), "KiB", LOWER)
        result.add("fresh server RSS", fresh / 1024, "MiB", LOWER)
        result.add("server RSS loaded", loaded / 1024, "MiB", LOWER)
        result.add("sessions/s", len(clients) / elapsed, "1/s", HIGHER)
        result.counts["sessions"] = len(alive)
    finally:
        await fleet.close()
    result.absorb(stats)
    return result


async def settled_rss(tree: ProcessTree, settle_s: float, limit_s: float) -> int:
    """The tree's RSS once it has stopped moving: after ``settle_s``, samples one second
    apart until two agree within 1 %, for at most ``limit_s`` more seconds (servers
    may hold garbage from the handshakes for a moment)."""
    await asyncio.sleep(settle_s)
    deadline = time.monotonic() + limit_s
    previous = tree.rss_kib()
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        current = tree.rss_kib()
        if abs(current - previous) <= 0.01 * previous:
            return current
        previous = current
    return previous


async def scenario_msg_sat(target: Target, params: Params) -> Result:
    """Closed loop: pairs bounce messages, ``msg_in_flight`` per user; throughput."""
    result = Result("msg-sat")
    stats, traffic = Stats(), Traffic()

    def on_message(client: Client, node: Node) -> None:
        if body_time(node) is None:
            return
        traffic.received += 1
        if traffic.measuring:
            traffic.in_window += 1
        if traffic.replying:
            traffic.sent += 1
            client.send_chat()

    fleet = Fleet(target, params, stats, on_message)
    try:
        senders = paired(await fleet.sign_in(range(params.users_for("msg-sat"))))
        await asyncio.sleep(params.settle_s)  # let the presence exchange end
        for client in senders:
            for _ in range(params.msg_in_flight):
                traffic.sent += 1
                client.send_chat()
        await asyncio.sleep(params.warmup_s)
        meter = CpuMeter(target.tree, target.redis_cpu)
        meter.start()
        traffic.measuring = True
        began = time.monotonic()
        await asyncio.sleep(params.measure_s)
        traffic.measuring = False
        elapsed = time.monotonic() - began
        cpu = meter.stop()
        traffic.replying = False
        await traffic.drain(params.drain_timeout_s)
        rate = traffic.in_window / elapsed
        result.add("delivered", rate, "msg/s", HIGHER)
        result.add("server CPU per message", cpu_per_message_us(cpu.server, rate), "µs", LOWER)
        if target.redis_cpu is not None:
            result.add("Redis CPU per message", cpu_per_message_us(cpu.redis, rate), "µs")
        _add_cpu(result, cpu, target)
        result.counts.update(users=len(senders), sent=traffic.sent, delivered=traffic.received)
        result.undelivered = traffic.undelivered
    finally:
        await fleet.close()
    result.absorb(stats)
    return result


async def scenario_msg_rate(target: Target, params: Params) -> Result:
    """Open loop: ``rate_per_s`` messages per second offered on a schedule; latency."""
    result = Result("msg-rate")
    stats, traffic = Stats(), Traffic()

    def on_message(_client: Client, node: Node) -> None:
        sent_ns = body_time(node)
        if sent_ns is None:
            return
        traffic.received += 1
        if traffic.window_ns[0] <= sent_ns < traffic.window_ns[1]:
            traffic.latencies_ns.append(time.monotonic_ns() - sent_ns)

    fleet = Fleet(target, params, stats, on_message)
    try:
        senders = paired(await fleet.sign_in(range(params.users_for("msg-rate"))))
        await asyncio.sleep(params.settle_s)
        if not senders:
            raise LoginError("no pair of users signed in")
        lag, cpu = await _offer(target, params, traffic, senders)
        await traffic.drain(params.drain_timeout_s)
        latencies = sorted(traffic.latencies_ns)
        result.add("offered", traffic.window_sent / params.measure_s, "msg/s")
        result.add("latency p50", percentile(latencies, 0.50) / NS_PER_MS, "ms", LOWER)
        result.add("latency p99", percentile(latencies, 0.99) / NS_PER_MS, "ms", LOWER)
        result.add("latency max", (latencies[-1] if latencies else 0) / NS_PER_MS, "ms", LOWER)
        _add_cpu(result, cpu, target)
        result.add("generator lag max", lag * 1000, "ms")
        result.counts.update(users=len(senders), sent=traffic.sent, delivered=traffic.received)
        result.undelivered = traffic.undelivered
    finally:
        await fleet.close()
    result.absorb(stats)
    return result


async def _offer(
    target: Target, params: Params, traffic: Traffic, senders: list[Client]
) -> tuple[float, CpuUse]:
    """Send on schedule for warm-up plus measure; returns (max lag s, cpu in window)."""
    rate, count = params.rate_per_s, len(senders)
    meter = CpuMeter(target.tree, target.redis_cpu)
    began, began_ns = time.monotonic(), time.monotonic_ns()
    warmup_ns = int(params.warmup_s * 1e9)
    traffic.window_ns = (began_ns + warmup_ns, began_ns + warmup_ns + int(params.measure_s * 1e9))
    total, lag, cpu, sent = params.warmup_s + params.measure_s, 0.0, CpuUse(), 0
    while (elapsed := time.monotonic() - began) < total:
        if traffic.window_ns[0] <= time.monotonic_ns() and not traffic.measuring:
            traffic.measuring = True
            meter.start()
        due = int(elapsed * rate)
        if due > sent:
            lag = max(lag, elapsed - (sent + 1) / rate)
        while sent < due:
            senders[sent % count].send_chat()
            sent += 1
            traffic.sent += 1
            if traffic.measuring:
                traffic.window_sent += 1
        await asyncio.sleep(0.001)
    if traffic.measuring:
        cpu = meter.stop()
    traffic.measuring = False
    return lag, cpu


async def scenario_offline(target: Target, params: Params) -> Result:
    """Messages to offline partners, stored (a trailing ping per sender shows the
    server has processed them), then delivered when the partners come online."""
    result = Result("offline")
    stats, traffic = Stats(), Traffic()

    def on_message(_client: Client, node: Node) -> None:
        if body_time(node) is not None:
            traffic.received += 1
            traffic.last_received = time.monotonic()

    senders_fleet = Fleet(target, params, stats)
    recipients_fleet = Fleet(target, params, stats, on_message)
    try:
        users = params.users_for("offline")
        senders = await senders_fleet.sign_in(range(0, users, 2))
        await asyncio.sleep(params.settle_s)
        stored_in = await _store(senders, params, traffic, stats)
        recipients = await recipients_fleet.sign_in(
            (partner(s.index) for s in senders), presence=False
        )
        early = traffic.received
        began = time.monotonic()
        for client in recipients:  # initial presence releases the stored messages
            client.send_stanza(PRESENCE)
        await traffic.drain(params.drain_timeout_s)
        if early:
            result.notes.append(f"{early} stored messages arrived before initial presence")
        delivered_in = max(traffic.last_received - began, 1e-9)
        result.add("stored", traffic.sent / stored_in, "msg/s", HIGHER)
        result.add("delivered", traffic.received / delivered_in, "msg/s", HIGHER)
        result.counts.update(sent=traffic.sent, delivered=traffic.received)
        result.undelivered = traffic.undelivered
    finally:
        await recipients_fleet.close()
        await senders_fleet.close()
    result.absorb(stats)
    return result


async def _store(senders: list[Client], params: Params, traffic: Traffic, stats: Stats) -> float:
    """Each sender sends its messages then a ping; returns the seconds until all pings
    are answered."""
    began = time.monotonic()
    for client in senders:
        for _ in range(params.offline_per_pair):
            traffic.sent += 1
            client.send_chat()
    answers = await asyncio.gather(  # the last pings wait behind every message stored
        *(client.ping(params.scenario_timeout_s) for client in senders), return_exceptions=True
    )
    elapsed = time.monotonic() - began
    for client, answer in zip(senders, answers, strict=True):
        if isinstance(answer, BaseException):
            stats.error(f"{client.user}: trailing ping failed: {answer!r}")
    return elapsed


# --- Running -----------------------------------------------------------------------

ScenarioFunction = Callable[[Target, Params], Awaitable[Result]]


async def _login_tls(target: Target, params: Params) -> Result:
    return await scenario_login(target, params, tls=True)


RUNNERS: dict[str, ScenarioFunction] = {
    "login": scenario_login,
    "login-tls": _login_tls,
    "idle": scenario_idle,
    "msg-sat": scenario_msg_sat,
    "msg-rate": scenario_msg_rate,
    "offline": scenario_offline,
}


async def _bounded(scenario: str, target: Target, params: Params) -> Result:
    try:
        async with asyncio.timeout(params.scenario_timeout_s):
            return await RUNNERS[scenario](target, params)
    except TimeoutError:
        failed = Result(scenario, errors=1)
        failed.error_samples.append(f"the scenario timed out after {params.scenario_timeout_s} s")
        return failed
    except LoginError as error:
        return Result(scenario, errors=1, error_samples=[str(error)])


def event_loop_kind() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_scenario(scenario: str, target: Target, params: Params) -> Result:
    """Run one scenario against a running server on a fresh event loop."""
    if event_loop_kind() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_bounded(scenario, target, params))
    return asyncio.run(_bounded(scenario, target, params))
