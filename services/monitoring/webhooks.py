"""Sending an alert to a webhook URL a user configured, without letting that URL reach inside our network.

A webhook URL is user input our workers POST to, the classic server-side request forgery path: a URL at
http://169.254.169.254/ would hand the cloud's instance credentials to whoever reads the delivery log. So
check_url accepts only http(s) URLs whose host resolves to public internet addresses alone, and deliver
checks again at send time, then dials the address it checked rather than the name: a second lookup would
let a name whose DNS answer changes between the check and the connect (DNS rebinding) reach a private
address. The name still goes in the Host header and, for https, in SNI and the certificate check, so
virtual hosts and TLS work as with any client. `allow_private` (an operator setting for trusted networks,
and tests) skips only the address-class check.

Receivers authenticate a delivery by its X-Modelyard-Signature header, Stripe's scheme:
"t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>"; the timestamp lets them refuse replays, and
`verify` is their side of it. X-Modelyard-Event-Id is the same on every attempt, so they can drop repeats.

deliver makes one attempt and never raises; its caller records the Delivery and, when it is retryable,
tries again backoff(n) seconds after attempt n, until MAX_ATTEMPTS. Redirects are never followed: the
Location could point anywhere, and a 3xx is not retried either, since it would only redirect again.
`timeout` bounds each connect, TLS handshake and read (http.client's timeout), not the whole exchange, and
the DNS lookup has only the resolver's own; the delivery task's time limit is the backstop for both.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import logging
import random
import re
import socket
import ssl
import string
import time
import urllib.parse
from dataclasses import dataclass

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
USER_AGENT = "Modelyard-Webhook/1"
# Reading a typical answer whole lets the connection close cleanly; only the start is worth logging.
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_BYTES = 1024
# Ten seconds doubling, capped at 15 minutes: a retry waits in the broker as a delayed task, and RabbitMQ
# closes a channel holding an unacknowledged message past its 30-minute consumer timeout. The 15 waits
# before the 16th and last attempt add up to about 2.4 hours, long enough to ride out a receiver's
# deploy or short outage.
MAX_ATTEMPTS = 16
FIRST_BACKOFF = 10
MAX_BACKOFF = 900
# An IPv6-only network's gateway forwards 64:ff9b::a.b.c.d to the IPv4 address a.b.c.d (RFC 6052).
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# urlsplit drops tabs and newlines silently, and http.client refuses a request line holding any of these.
SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class UnsafeWebhook(ValueError):
    """A URL webhooks may not be sent to; the message says why, for the user."""


class UnresolvedHost(UnsafeWebhook):
    """A host name that does not resolve: refused when configured, but worth retrying at send time."""


@dataclass(frozen=True)
class Delivery:
    """One attempt's outcome, as the delivery log records it."""

    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    response_excerpt: str | None
    retryable: bool


def check_url(url: str, *, allow_private: bool = False) -> list[IPAddress]:
    """The addresses `url`'s host resolves to, each a public one; UnsafeWebhook says why the URL may not be used."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhook(f"A webhook URL may be at most {MAX_URL_LENGTH} characters long.")
    if SPACE_OR_CONTROL.search(url):
        raise UnsafeWebhook("A webhook URL may not contain spaces or control characters.")
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.port == 0:
            raise ValueError("port 0 is not a port")
    except ValueError as exc:  # a port that is no number or out of range, a bracketed host that is no IPv6 address
        raise UnsafeWebhook(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhook("A webhook URL must start with http:// or https://.")
    if "@" in parts.netloc:
        raise UnsafeWebhook("A webhook URL may not carry a user name or password: receivers check the signature.")
    if not parts.hostname:
        raise UnsafeWebhook("A webhook URL must name a host.")
    try:
        found = socket.getaddrinfo(parts.hostname, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnresolvedHost(f"{parts.hostname} does not resolve ({exc.strerror}).") from exc
    except UnicodeError as exc:  # an internationalised name IDNA refuses: an empty or overlong label
        raise UnsafeWebhook(f"{parts.hostname} is not a valid host name.") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
    refused = None if allow_private else next((address for address in addresses if not _is_public(address)), None)
    if refused is not None:
        subject = str(refused) if parts.hostname == str(refused) else f"{parts.hostname} resolves to {refused}, which"
        raise UnsafeWebhook(f"{subject} is not a public internet address (loopback, private, link-local and other "
                            "special-purpose addresses are refused).")
    return addresses


def _is_public(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return _is_public(embedded)
    # is_global leaves out loopback, private, link-local, unspecified, documentation and 100.64.0.0/10 (shared
    # address space), but not multicast, IPv4-compatible ::a.b.c.d (in the reserved ::/8) nor the deprecated
    # site-local fec0::/10.
    return address.is_global and not (address.is_multicast or address.is_reserved
                                      or getattr(address, "is_site_local", False))


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches: IPv4-mapped, 6to4, Teredo's client, NAT64's well-known prefix."""
    if address.version == 4:
        return None
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Modelyard-Signature header: "t=<timestamp>,v1=<hex HMAC-SHA256 of '<timestamp>.' + body>"."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(secret: bytes, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance` seconds of `now` (the receiver's side).

    Any of several v1 signatures may match, as Stripe allows while a secret is being rotated; a timestamp
    too far ahead fails as one too old does, so a clock skew of up to `tolerance` either way passes.
    """
    fields = [field.strip().partition("=") for field in header.split(",")]
    timestamps = [value for key, _, value in fields if key == "t"]
    if len(timestamps) != 1 or not re.fullmatch(r"[0-9]{1,20}", timestamps[0]):
        return False
    timestamp = int(timestamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body).encode()
    # compare_digest takes only ASCII str; as bytes, a forged header with other characters is a plain mismatch.
    return any(hmac.compare_digest(expected, value.encode()) for key, _, value in fields if key == "v1")


def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def deliver(url: str, body: bytes, *, secret: bytes, event_id: str, timeout: float = 5.0,
            allow_private: bool = False, now: float | None = None) -> Delivery:
    """POST `body` to `url` once, signed, and say how it went: never raises."""
    started = time.monotonic()
    status = excerpt = None
    try:
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Modelyard-Event-Id": event_id,
            "X-Modelyard-Signature": sign(secret, int(time.time() if now is None else now), body),
        }
        addresses = check_url(url, allow_private=allow_private)
        # The first address in getaddrinfo's order of preference (RFC 6724), the one most clients try first;
        # should it not answer, the attempt fails and the retry resolves afresh.
        status, reason, location, excerpt = _post(urllib.parse.urlsplit(url), addresses[0], body, headers, timeout)
    except UnresolvedHost as exc:  # it resolved when configured: likely the resolver's hiccup or a record being fixed
        error, retryable = str(exc), True
    except UnsafeWebhook as exc:
        error, retryable = str(exc), False
    except TimeoutError:
        error, retryable = f"No answer within {timeout:g} s.", True
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, TLS and certificate errors, a garbled answer
        error, retryable = f"{type(exc).__name__}: {exc}", True
    except Exception as exc:  # a bug of ours rather than the receiver's trouble: logged with its traceback, not retried
        log.exception("Webhook delivery of event %s failed unexpectedly", event_id)
        error, retryable = f"{type(exc).__name__}: {exc}", False
    else:
        error, retryable = _judged(status, reason, location)
    return Delivery(delivered=status is not None and error is None, status_code=status, error=error,
                    duration_ms=(time.monotonic() - started) * 1000, response_excerpt=excerpt, retryable=retryable)


def _judged(status: int, reason: str, location: str | None) -> tuple[str | None, bool]:
    """The error of an answer with `status` (None for 2xx) and whether another attempt may fare better."""
    if 200 <= status < 300:
        return None, False
    if 300 <= status < 400:
        where = f" to {location[:EXCERPT_BYTES]}" if location else ""  # bounded like the excerpt, for the log
        return f"HTTP {status} redirect{where} not followed: configure the webhook with its final URL.", False
    return f"HTTP {status} {reason}".rstrip(), status in (408, 429) or 500 <= status < 600


def _post(parts: urllib.parse.SplitResult, address: IPAddress, body: bytes, headers: dict[str, str],
          timeout: float) -> tuple[int, str, str | None, str | None]:
    """Status, reason, Location and the start of the body of a POST to `address`, for `parts`' host."""
    https = parts.scheme == "https"
    connection = _PinnedConnection(parts.hostname, parts.port or (443 if https else 80), address=address,
                                   timeout=timeout, tls=ssl.create_default_context() if https else None)
    # A path with non-ASCII characters is percent-encoded as browsers do; http.client sends only ASCII.
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = urllib.parse.quote(target, safe=string.punctuation)
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        try:
            content = response.read(MAX_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException):  # the status is the answer; a body cut short does not change it
            content = None
        excerpt = None if content is None else content[:EXCERPT_BYTES].decode("utf-8", errors="replace")
        return response.status, response.reason, response.getheader("Location"), excerpt
    finally:
        connection.close()


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to `host` that dials `address` and never looks `host` up.

    http.client takes the Host header from `host`; TLS sends it as SNI and checks the certificate against it.
    """

    def __init__(self, host: str, port: int, *, address: IPAddress, timeout: float, tls: ssl.SSLContext | None):
        super().__init__(host, port, timeout=timeout)
        self.default_port = http.client.HTTPS_PORT if tls else http.client.HTTP_PORT  # Host gets no ":443"
        self._address = address
        self._tls = tls

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)  # a literal: no lookup
        if self._tls:  # set first, the plain socket is closed with the connection should the handshake fail
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1-based): 10 s doubling up to 15 minutes, each +-20%.

    The jitter spreads retries of deliveries that failed together (one receiver's outage) without letting a
    wait shrink towards nothing, as full jitter would.
    """
    nominal = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
    return min(MAX_BACKOFF, nominal * random.uniform(0.8, 1.2))
