"""The stream client over TLS (``wss://``), as against the real gateway.

The client's fast frame reader and writer work on the raw socket, so this checks them on an
``ssl.SSLSocket``: frames split across TLS records and a frame far larger than one read, with
pings and acks in between. The certificate is a throwaway self-signed one for 127.0.0.1, made by
the ``openssl`` command (installed with the system's CA certificates).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

import dingsync
from dingsync.errors import ReconnectGaveUp, TransportError
from dingsync.testing import FakeDingTalk

from .conftest import FAST

WAIT = 15.0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make the test certificate"
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_fake(certificate: Tuple[Path, Path]) -> Iterator[FakeDingTalk]:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    with FakeDingTalk(ws_tls=context) as fake:
        yield fake


def make(fake: FakeDingTalk, router: dingsync.Router, **options: object) -> dingsync.StreamClient:
    return dingsync.StreamClient(
        fake.credentials,
        router,
        endpoints=fake.endpoints,
        config=dingsync.StreamConfig(**{**FAST, **options}),  # type: ignore[arg-type]
    )


def test_frames_pings_and_acks_over_tls(
    tls_fake: FakeDingTalk, certificate: Tuple[Path, Path]
) -> None:
    """Over wss:// the client reads and writes frames on the TLS socket: a burst of 300
    messages, one 300 KB message (many TLS records, more than one read) and a ping are all
    handled, acked correctly and echoed."""
    assert tls_fake.ws_endpoint.startswith("wss://127.0.0.1:")
    route = dingsync.Router()
    sizes = []
    route.chatbot(lambda msg, ctx: sizes.append(len(msg.text)) or "ok")
    client = make(tls_fake, route, ca_bundle=str(certificate[0]))
    client.start()
    try:
        deadline = time.monotonic() + WAIT
        while not client.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.connected, client.last_error
        mids = tls_fake.push_many(300)
        mids.append(tls_fake.push_chatbot("x" * 300_000))
        ping = tls_fake.ping()
        tls_fake.wait_for_acks(mids + [ping], timeout=WAIT)
    finally:
        client.stop(timeout=5)
    assert len(sizes) == 301 and max(sizes) == 300_000
    assert all(json.loads(tls_fake.wait_for_ack(m)["data"]) == {"response": "ok"} for m in mids)
    assert [p.echoed == p.expected for p in tls_fake.pongs] == [True]
    assert tls_fake.violations == []


def test_an_untrusted_certificate_is_a_clear_error(tls_fake: FakeDingTalk) -> None:
    """Without the CA bundle the handshake fails verification, and the error says what to
    set; the client never falls back to an unverified connection."""
    policy = dingsync.ReconnectPolicy(initial=0.05, jitter=0.0, max_attempts=2)
    client = make(tls_fake, dingsync.Router(), reconnect=policy, ca_bundle=None)
    with pytest.raises(ReconnectGaveUp) as info:
        client.run_forever()
    cause = info.value.__cause__
    assert isinstance(cause, TransportError)
    assert "TLS verification" in str(cause) and "ca_bundle" in str(cause)
    assert not tls_fake.connections
