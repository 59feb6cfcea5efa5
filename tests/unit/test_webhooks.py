"""Webhook delivery: which URLs are refused, the signature receivers check, and one attempt against a real
local HTTP(S) server in a thread, as the receiver sees it and as the delivery log records it."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import re
import socket
import ssl
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.monitoring import webhooks
from services.monitoring.webhooks import UnsafeWebhook, backoff, check_url, deliver, sign, verify

SECRET = b"whsec-test"
NOW = 1_700_000_000
BODY = b'{"alert": "drift", "model": "churn", "score": 0.42}'
HOOK_HOST = "hooks.example.test"


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes


@dataclass
class Receiver:
    """What a local webhook receiver answers, and what it was sent."""

    port: int
    status: int = 200
    answer: bytes = b'{"ok": true}'
    answer_headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the request until the test ends, past any client timeout
    requests: list[Received] = field(default_factory=list)
    server_names: list[str] = field(default_factory=list)  # TLS SNI, when serving https
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hooks/alerts", *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers["Content-Length"]))
        receiver.requests.append(Received(self.path, self.headers, body))
        if receiver.hang:
            receiver.release.wait(10)
            return
        self.send_response(receiver.status)
        for name, value in receiver.answer_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(receiver.answer)))
        self.end_headers()
        self.wfile.write(receiver.answer)

    def log_message(self, *args):
        pass


@contextmanager
def _serving(tls: ssl.SSLContext | None = None):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.receiver = Receiver(port=server.server_address[1])
    if tls:
        tls.sni_callback = lambda _socket, name, _context: server.receiver.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # The socket listens from here on: a client connecting before the loop runs waits in the backlog. The loop
    # checks for shutdown each poll_interval.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def receiver():
    with _serving() as serving:
        yield serving


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A test CA's certificate file, and a server context holding its certificate for HOOK_HOST alone."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)

    hour = datetime.timedelta(hours=1)

    def certificate(subject, public_key, extension, critical):
        builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name("Modelyard test CA"))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - hour).not_valid_after(now + 24 * hour)
                   .add_extension(extension, critical=critical))
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    ca_file = folder / "ca.pem"
    ca_file.write_bytes(certificate("Modelyard test CA", ca_key.public_key(),
                                    x509.BasicConstraints(ca=True, path_length=None), critical=True))
    chain = folder / "server.pem"
    chain.write_bytes(certificate(HOOK_HOST, key.public_key(), x509.SubjectAlternativeName([x509.DNSName(HOOK_HOST)]),
                                  critical=False)
                      + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_file, chain


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture
def tls_receiver(certificates, monkeypatch):
    """An https receiver whose certificate the client trusts (OpenSSL reads SSL_CERT_FILE) for HOOK_HOST only."""
    ca_file, chain = certificates
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    with _serving(context) as serving:
        yield serving


@pytest.fixture
def resolver(monkeypatch):
    """Resolve the names a test sets to the addresses it gives, counting their lookups; other names as usual."""
    real = socket.getaddrinfo
    names: dict[str, list[str]] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in names:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [entry for address in names[host] for entry in real(address, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names, lookups


def _deliver(url: str, **options) -> webhooks.Delivery:
    """deliver() with the test's body and secret, allowing the local receivers' address unless told otherwise."""
    return deliver(url, BODY, secret=SECRET, now=NOW, **{"event_id": "evt-1", "allow_private": True, **options})


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.com/hook", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("http://user:pw@example.com/", "user name or password"),
    ("http:///hooks", "must name a host"),
    ("http://example.com:99999/", "Not a valid URL"),
    ("http://example.com/a b", "spaces or control characters"),
    ("http://example.com/" + "a" * 2048, "at most 2048 characters"),
    ("http://127.0.0.1/", "127.0.0.1 is not a public internet address"),
    ("http://localhost/", "localhost resolves to"),
    ("http://10.0.0.1/", "not a public"),
    ("http://192.168.1.1/", "not a public"),
    ("http://169.254.169.254/latest/meta-data", "not a public"),
    ("http://[::1]/", "not a public"),
    ("http://[::ffff:127.0.0.1]/", "not a public"),
    ("http://[2002:7f00:1::]/", "not a public"),  # 6to4 around 127.0.0.1
    ("http://[64:ff9b::a00:1]/", "not a public"),  # NAT64 of 10.0.0.1
    ("http://[fe80::1]/", "not a public"),
    ("http://100.64.0.1/", "not a public"),
    ("http://0.0.0.0/", "not a public"),
    ("http://224.0.0.1/", "not a public"),
    ("http://2130706433/", None),  # 127.0.0.1 as one number: refused whether the resolver reads it or not
    ("http://nothing.invalid/", "nothing.invalid does not resolve"),
])
def test_a_url_that_could_reach_inside_our_network_is_refused_with_its_reason(url, reason):
    with pytest.raises(UnsafeWebhook, match=reason and re.escape(reason)):
        check_url(url)


@pytest.mark.parametrize("url, address", [
    ("http://93.184.215.14/hooks", "93.184.215.14"),
    ("https://1.1.1.1/", "1.1.1.1"),
    ("https://[2606:4700::1111]:8443/x?y=1", "2606:4700::1111"),
    ("http://[64:ff9b::101:101]/", "64:ff9b::101:101"),  # NAT64 of 1.1.1.1
])
def test_a_public_address_is_accepted_and_returned(url, address):
    assert check_url(url) == [ipaddress.ip_address(address)]


def test_a_name_with_any_private_address_is_refused(resolver):
    names, _ = resolver
    names[HOOK_HOST] = ["1.1.1.1", "10.0.0.7"]
    with pytest.raises(UnsafeWebhook, match=f"{HOOK_HOST} resolves to 10.0.0.7"):
        check_url(f"https://{HOOK_HOST}/")


def test_allow_private_accepts_a_local_address_but_still_checks_the_rest():
    assert check_url("http://127.0.0.1:8080/hooks", allow_private=True) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(UnsafeWebhook, match="http:// or https://"):
        check_url("file:///etc/passwd", allow_private=True)
    with pytest.raises(UnsafeWebhook, match="does not resolve"):
        check_url("http://nothing.invalid/", allow_private=True)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"t={NOW},v1={expected}"


def test_a_signature_verifies_within_the_tolerance():
    header = sign(SECRET, NOW, BODY)
    assert verify(SECRET, header, BODY, now=NOW + 299)
    assert verify(SECRET, f"v1=deadbeef, {header.replace(',', ', ')}", BODY, now=NOW)  # any of several v1


@pytest.mark.parametrize("case, secret, header, body, now", [
    ("changed body", SECRET, sign(SECRET, NOW, BODY), BODY + b" ", NOW),
    ("wrong secret", b"another secret", sign(SECRET, NOW, BODY), BODY, NOW),
    ("old timestamp", SECRET, sign(SECRET, NOW, BODY), BODY, NOW + 301),
    ("timestamp from the future", SECRET, sign(SECRET, NOW, BODY), BODY, NOW - 301),
    ("timestamp changed", SECRET, sign(SECRET, NOW, BODY).replace(f"t={NOW}", f"t={NOW + 1}"), BODY, NOW),
    ("no timestamp", SECRET, sign(SECRET, NOW, BODY).split(",")[1], BODY, NOW),
    ("not ASCII", SECRET, f"t={NOW},v1=é", BODY, NOW),
    ("garbage", SECRET, "nonsense", BODY, NOW),
])
def test_a_signature_that_does_not_match_fails_verification(case, secret, header, body, now):
    assert not verify(secret, header, body, now=now)


def test_a_2xx_answer_is_delivered_with_the_exact_body_and_signed_headers(receiver):
    delivery = _deliver(receiver.url())

    assert delivery.delivered and delivery.status_code == 200 and delivery.error is None
    assert delivery.response_excerpt == '{"ok": true}' and delivery.duration_ms > 0
    [request] = receiver.requests
    assert request.path == "/hooks/alerts" and request.body == BODY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "Modelyard-Webhook/1"
    assert request.headers["X-Modelyard-Event-Id"] == "evt-1"
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert verify(SECRET, request.headers["X-Modelyard-Signature"], request.body, now=NOW + 5)


def test_delivery_dials_the_checked_address_and_sends_the_name_as_host(receiver, resolver):
    names, lookups = resolver
    names[HOOK_HOST] = ["127.0.0.1"]

    delivery = _deliver(receiver.url("/é?x=1", host=HOOK_HOST))

    assert delivery.delivered
    assert lookups == [HOOK_HOST]  # once, for the check: a changed DNS answer cannot redirect the connection
    assert receiver.requests[0].headers["Host"] == f"{HOOK_HOST}:{receiver.port}"
    assert receiver.requests[0].path == "/%C3%A9?x=1"


@pytest.mark.parametrize("status, retryable", [
    (500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (410, False),
])
def test_a_failed_answer_is_retried_only_when_another_attempt_may_pass(receiver, status, retryable):
    receiver.status, receiver.answer = status, b"x" * 5000

    delivery = _deliver(receiver.url())

    assert not delivery.delivered and delivery.status_code == status
    assert delivery.retryable is retryable
    assert delivery.error.startswith(f"HTTP {status}")
    assert delivery.response_excerpt == "x" * 1024


def test_a_redirect_is_not_followed_nor_retried(receiver):
    receiver.status, receiver.answer_headers = 302, {"Location": "http://169.254.169.254/latest/meta-data"}

    delivery = _deliver(receiver.url())

    assert not delivery.delivered and delivery.status_code == 302 and not delivery.retryable
    assert "redirect to http://169.254.169.254/latest/meta-data not followed" in delivery.error
    assert len(receiver.requests) == 1


def test_a_closed_port_fails_the_attempt_and_is_retried():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]

    delivery = _deliver(f"http://127.0.0.1:{port}/hooks")

    assert not delivery.delivered and delivery.status_code is None and delivery.retryable
    assert "Connection refused" in delivery.error


def test_a_receiver_slower_than_the_timeout_fails_the_attempt_and_is_retried(receiver):
    receiver.hang = True

    delivery = _deliver(receiver.url(), timeout=0.2)

    assert not delivery.delivered and delivery.retryable
    assert delivery.error == "No answer within 0.2 s."
    assert 200 <= delivery.duration_ms < 5000
    assert len(receiver.requests) == 1


def test_a_local_url_is_refused_before_any_connection_unless_allowed(receiver):
    delivery = _deliver(receiver.url(), allow_private=False)

    assert not delivery.delivered and not delivery.retryable and delivery.status_code is None
    assert "127.0.0.1 is not a public internet address" in delivery.error
    assert receiver.requests == []


def test_an_event_id_cannot_smuggle_a_header_in(receiver, caplog):
    delivery = _deliver(receiver.url(), event_id="evt-1\r\nX-Injected: yes")

    assert not delivery.delivered and not delivery.retryable and "Invalid header value" in delivery.error
    assert receiver.requests == []
    assert "failed unexpectedly" in caplog.text  # a caller's bug, logged with its traceback


def test_a_name_that_stops_resolving_fails_the_attempt_and_is_retried():
    delivery = _deliver("https://hooks.nothing.invalid/")

    assert not delivery.delivered and delivery.retryable
    assert "hooks.nothing.invalid does not resolve" in delivery.error


def test_https_sends_the_name_as_sni_and_checks_the_certificate_against_it(tls_receiver, resolver):
    names, _ = resolver
    names[HOOK_HOST] = ["127.0.0.1"]

    delivery = _deliver(tls_receiver.url(host=HOOK_HOST, scheme="https"))

    assert delivery.delivered, delivery.error
    assert tls_receiver.server_names == [HOOK_HOST]
    assert tls_receiver.requests[0].body == BODY


def test_https_to_a_name_the_certificate_does_not_hold_fails(tls_receiver, resolver):
    names, _ = resolver
    names["other.example.test"] = ["127.0.0.1"]

    delivery = _deliver(tls_receiver.url(host="other.example.test", scheme="https"))

    assert not delivery.delivered and delivery.retryable
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.error
    assert tls_receiver.requests == []


def test_backoff_doubles_from_ten_seconds_with_jitter_and_is_capped_at_fifteen_minutes():
    draws = {attempt: [backoff(attempt) for _ in range(200)] for attempt in range(1, webhooks.MAX_ATTEMPTS + 5)}

    for attempt, waits in draws.items():
        nominal = min(10 * 2 ** (attempt - 1), 900)
        assert all(0.8 * nominal <= wait <= min(1.2 * nominal, 900) for wait in waits), attempt
        assert len(set(waits)) > 1, attempt
    assert all(max(draws[attempt]) < min(draws[attempt + 1]) for attempt in range(1, 7))  # 10 s ... 640 s
    assert max(draws[webhooks.MAX_ATTEMPTS + 4]) <= 900
