"""Where webhooks may go: public addresses only, unless the operator allows more (SSRF guard).

A relying party chooses its webhook URL, and the worker POSTs to it from inside
the operator's network. Without a guard a party could point it at internal
addresses (a database's admin port, a cloud metadata service at
169.254.169.254, ``localhost``). As webhook senders do (Svix runs its deliveries
through an egress proxy that refuses private ranges; GitLab refuses "requests to
the local network" unless allow-listed), the cascades refuse every address that
is not publicly routable — loopback, private, link-local, shared (CGNAT),
multicast, unspecified, reserved — and every IPv6 form that carries an IPv4
address inside it (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
IPv4-translated ``::ffff:0:a.b.c.d``, 6to4 ``2002:AABB:CCDD::``, Teredo
``2001:0::/32``, NAT64 ``64:ff9b::/96`` and the local-use ``64:ff9b:1::/48``)
when the IPv4 address inside is one of those (``[2002:7f00:1::1]`` is 127.0.0.1
reached through a 6to4 relay) — unless the operator allows it:

    TRUSTLEDGER_WEBHOOK_ALLOW="127.0.0.1, 10.20.0.0/16, hooks.internal"

lists networks (CIDR), addresses and host names that may be reached although
they are not public. The check runs twice:

* when a party subscribes (:meth:`Egress.check_url`): an address in the URL, or
  one its host name resolves to now, that is refused gives a 422 naming ``url``
  (a name that does not resolve yet is accepted: delivery checks again);
* when delivering (:meth:`Egress.connect`, under every connection a
  :class:`Sender` opens), at the moment of connecting: the host name is resolved,
  **every** address it resolves to must be allowed, and the connection goes to an
  address just checked — a name whose DNS answer changed since (DNS rebinding) is
  refused then. Redirects are never followed and no proxy is used.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import httpx

from trustledger.errors import ConfigError, InputError

ALLOW_ENV = "TRUSTLEDGER_WEBHOOK_ALLOW"
"""Networks, addresses and host names webhooks may reach although they are not public."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                   r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?")


class EgressRefusedError(InputError):
    """A webhook address the operator does not allow (not public, and not allow-listed)."""


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of its form.

    IPv4-compatible (``::a.b.c.d``), IPv4-translated (``::ffff:0:a.b.c.d``), 6to4
    (``2002:AABB:CCDD::/48``), Teredo (``2001:0::/32``: its server and its client,
    un-obfuscated) and NAT64 (``64:ff9b::/96``, and ``64:ff9b:1::/48`` read with the
    IPv4 address in the last 32 bits). IPv4-mapped addresses are not listed here:
    :func:`kind_of` judges them as the IPv4 address itself.
    """
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo
        found += [("Teredo", server), ("Teredo", client)]
    if address in _NAT64 or address in _NAT64_LOCAL:
        found.append(("NAT64", low))
    elif address in _TRANSLATED:
        found.append(("IPv4-translated", low))
    elif address in _COMPATIBLE and int(address) > 1:  # not :: (unspecified) nor ::1
        found.append(("IPv4-compatible", low))
    return found


def kind_of(address: Address) -> str | None:
    """Why ``address`` is not public (``"loopback"``, ``"private"``, ...); ``None`` if it is.

    An IPv6 address carrying a non-public IPv4 address (:func:`embedded_ipv4`) is
    refused as such, e.g. ``"6to4 address of 127.0.0.1, a loopback"``.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            for form, inner in embedded_ipv4(address):
                inner_kind = kind_of(inner)
                if inner_kind is not None:
                    return f"{form} address of {inner}, a {inner_kind}"
            if address in _NAT64_LOCAL:
                return "local-use NAT64 (not publicly routable)"
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("reserved", address.is_reserved), ("private", address.is_private))
    for name, hit in checks:
        if hit:
            return name
    return None if address.is_global else "not publicly routable"


@dataclass(frozen=True, slots=True)
class Egress:
    """The operator's allow-list: networks and host names reachable although not public."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str, source: str = ALLOW_ENV) -> Egress:
        """An allow-list from comma- or space-separated entries.

        :class:`ConfigError` naming ``source`` for an entry that is neither.
        """
        networks: list[Network] = []
        hosts: set[str] = set()
        for item in (part for part in re.split(r"[,\s]+", text.strip()) if part):
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if not _HOST.fullmatch(name):
                raise ConfigError(f"{source}: {item!r} is neither a network (CIDR), an "
                                  "address nor a host name")
            hosts.add(name)
        return cls(tuple(networks), frozenset(hosts))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Egress:
        """The allow-list in ``$TRUSTLEDGER_WEBHOOK_ALLOW`` (empty: public addresses only)."""
        env = os.environ if environ is None else environ
        return cls.parse(env.get(ALLOW_ENV, ""))

    def refusal(self, host: str, addresses: Iterable[Address]) -> str | None:
        """Why ``host`` (resolving to ``addresses``) may not be reached; ``None`` if it may."""
        if host.lower().rstrip(".") in self.hosts:
            return None
        for address in addresses:
            kind = kind_of(address)
            if kind is None or any(address in net for net in self.networks
                                   if net.version == address.version):
                continue
            named = "" if host.strip("[]") == str(address) else f" resolves to {address}, which"
            return (f"{host}{named} is a {kind} address; webhooks go only to public "
                    f"addresses (the operator may allow others with {ALLOW_ENV})")
        return None

    def resolve(self, host: str, port: int) -> list[Address]:
        """Every address ``host`` resolves to, each allowed; :class:`EgressRefusedError` if not.

        :class:`OSError` if the name does not resolve.
        """
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(
                ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found))
            if not addresses:
                raise OSError(f"{host} resolves to no address")
        refused = self.refusal(host, addresses)
        if refused is not None:
            raise EgressRefusedError(refused)
        return addresses

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to ``host`` (``TCP_NODELAY``), only if every address is allowed.

        The name is resolved now (:meth:`resolve`) and the connection goes to one of
        the addresses just checked, so a DNS answer changed since subscribing (DNS
        rebinding) is caught. :class:`EgressRefusedError` if refused, :class:`OSError`
        if it does not resolve or no address accepts the connection.
        """
        failure: OSError | None = None
        for address in self.resolve(host, port):
            try:
                sock = socket.create_connection((str(address), port), timeout)
            except OSError as err:
                failure = err
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        assert failure is not None  # resolve() never returns an empty list without raising
        raise failure

    def check_url(self, url: str) -> None:
        """Refuse (:class:`InputError` naming ``url``) a webhook URL reaching a refused address.

        A host name is resolved now; one that does not resolve (yet) is accepted,
        since delivery checks again before every connection.
        """
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self.resolve(host, port)
        except EgressRefusedError as err:
            raise InputError(f"url: {err}") from err
        except (OSError, ValueError, UnicodeError):
            return


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


_CONTEXT: list[ssl.SSLContext] = []
_CONTEXT_LOCK = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """The one TLS client context (httpx's: certifi's roots, certificates and names verified).

    Loading the roots costs tens of milliseconds, so every sender shares it (an
    :class:`ssl.SSLContext` may be used from several threads).
    """
    with _CONTEXT_LOCK:
        if not _CONTEXT:
            _CONTEXT.append(httpx.create_ssl_context(trust_env=False))
        return _CONTEXT[0]


_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_RECEIVE = 65_536


class ProtocolError(http.client.HTTPException):
    """The receiver's answer is not HTTP/1.1 the client can read (h11 says why)."""


@dataclass(frozen=True, slots=True)
class _Target:
    """A webhook URL taken apart once: where to connect and what the request line says."""

    key: tuple[str, str, int]
    host_header: str
    path: str

    @classmethod
    def of(cls, url: str) -> _Target:
        parts = urlsplit(url)
        host = parts.hostname or ""
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if _FORBIDDEN.search(path) or _FORBIDDEN.search(host):
            raise http.client.InvalidURL(f"URL can't contain control characters: {url!r}")
        shown = f"[{host}]" if ":" in host else host
        default = 443 if tls else 80
        return cls((parts.scheme, host, port), shown if port == default else f"{shown}:{port}",
                   path)


class _Connection:
    """One kept-alive connection (TLS-wrapped for https) and its HTTP/1.1 state (h11)."""

    __slots__ = ("http", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.http = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()


class Sender:
    """One sender thread's webhook client: keep-alive connections, each opened by the guard.

    A request goes over the connection kept for its ``(scheme, host, port)``, opened
    through :meth:`Egress.connect` (so the address is checked at every connection);
    redirects are never followed, no proxy is used, and at most :data:`MAX_BODY`
    bytes of an answer are read. A kept connection the receiver closed meanwhile is
    replaced once, at once (delivery is at least once: the receiver de-duplicates
    by ``webhook-id``). Not thread-safe: one per thread.

    HTTP/1.1 is h11's (the protocol state machine httpx is built on) over the guarded
    socket: a request in one write, the answer read until its end, the connection kept
    when both sides may go on. The standard library's client parses every answer's
    headers as an e-mail message, which cost more than the rest of a delivery.
    """

    MAX_BODY = 65_536
    """The most of an answer's body read; a longer answer closes the connection."""
    MAX_CONNECTIONS = 64
    """Connections kept open by one sender (the oldest is closed beyond this)."""

    def __init__(self, egress: Egress, timeout: float) -> None:
        """Connect where ``egress`` allows; ``timeout`` s for connecting and each read/write."""
        self.egress = egress
        self.timeout = timeout
        self._kept: dict[tuple[str, str, int], _Connection] = {}
        self._targets: dict[str, _Target] = {}

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` to ``url``; the answer's status.

        Raises :class:`EgressRefusedError` for an address not allowed, :class:`OSError`
        (:class:`TimeoutError` included) for a connection or an answer that fails,
        :class:`ProtocolError` (an :class:`http.client.HTTPException`) for an answer
        that is not HTTP/1.1, and :class:`ValueError` for a header h11 will not send.
        """
        target = self._targets.get(url)
        if target is None:
            target = _Target.of(url)
            if len(self._targets) >= 4 * self.MAX_CONNECTIONS:
                self._targets.clear()
            self._targets[url] = target
        try:
            request = h11.Request(method="POST", target=target.path, headers=[
                ("Host", target.host_header), ("Accept-Encoding", "identity"),
                ("Content-Length", str(len(body))), *headers.items()])
        except h11.LocalProtocolError as err:
            raise ValueError(f"a request h11 will not send: {err}") from err
        key = target.key
        for fresh in (False, True):
            conn = None if fresh else self._kept.pop(key, None)
            reused = conn is not None
            if conn is None:
                conn = self._open(key)
            try:
                machine = conn.http
                conn.sock.sendall(b"".join(machine.send(part) or b"" for part in (
                    request, h11.Data(data=body), h11.EndOfMessage())))
                status, keep = self._answer(conn)
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as err:
                conn.close()
                if reused:
                    continue  # the receiver closed the kept connection: once more, anew
                raise ConnectionError(f"{type(err).__name__}: {err}") from err
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                raise
            if keep:
                self._keep(key, conn)
            else:
                conn.close()
            return status
        raise AssertionError("unreachable: the second try is on a fresh connection")

    def _open(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        sock = self.egress.connect(host, port, self.timeout)
        if scheme == "https":
            try:
                sock = tls_context().wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return _Connection(sock)

    def _answer(self, conn: _Connection) -> tuple[int, bool]:
        """Read one answer: its status, and whether the connection may be kept."""
        machine = conn.http
        status: int | None = None
        read = 0
        while True:
            try:
                event = machine.next_event()
            except h11.RemoteProtocolError as err:
                raise ProtocolError(str(err)) from err
            if event is h11.NEED_DATA:
                chunk = conn.sock.recv(_RECEIVE)
                if not chunk and status is None:
                    raise http.client.RemoteDisconnected(
                        "Remote end closed connection without response")
                machine.receive_data(chunk)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                read += len(event.data)
                if read > self.MAX_BODY:
                    assert status is not None
                    return status, False
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                assert status is not None
                break
            # an h11.InformationalResponse: the final answer follows
        if machine.our_state is h11.DONE and machine.their_state is h11.DONE:
            machine.start_next_cycle()
            return status, True
        return status, False

    def _keep(self, key: tuple[str, str, int], conn: _Connection) -> None:
        self._kept[key] = conn
        while len(self._kept) > self.MAX_CONNECTIONS:
            self._kept.pop(next(iter(self._kept))).close()

    def close(self) -> None:
        """Close every kept connection."""
        for conn in self._kept.values():
            conn.close()
        self._kept.clear()
