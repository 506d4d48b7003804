"""Email authentication in tests: DKIM keys made here, published in a resolver of our own.

The inbound server verifies replies with dkimpy; tests hand it :data:`DNS` (conftest installs it
as ``notifier.replies.DNS_TXT``), so signatures made with :func:`sign` verify without the real DNS.
Every sender domain gets its own 2048-bit RSA key on first use (``evil.example`` too: an attacker
can sign for a domain they own, just not for someone else's).
"""

from __future__ import annotations

import base64
import email.policy
import functools
import threading
from email.message import EmailMessage
from email.utils import parseaddr

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SELECTOR = "convoy"


class TestDns:
    """A TXT resolver with dkimpy's ``dnsfunc`` signature: ``(name: bytes, timeout) -> bytes | None``."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.timeouts: set[str] = set()
        """Names whose lookup times out (as an unreachable name server)."""
        self.lookups: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        key = name.decode().rstrip(".").lower()
        with self._lock:
            self.lookups.append(key)
            if key in self.timeouts:
                raise dkim.DnsTimeoutError(f"{key}: no answer")
            return self.records.get(key)

    def publish(self, name: str, value: bytes) -> None:
        with self._lock:
            self.records[name.rstrip(".").lower()] = value


DNS = TestDns()


@functools.cache
def private_key(domain: str) -> bytes:
    """The domain's signing key (PEM); its public half is published at ``convoy._domainkey.<domain>``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    DNS.publish(f"{SELECTOR}._domainkey.{domain}", b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def wire(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def sign(data: bytes, domain: str, headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"message-id")) -> bytes:
    """``data`` with a DKIM-Signature of ``domain`` on top (relaxed/relaxed, rsa-sha256)."""
    signature = dkim.sign(
        data,
        SELECTOR.encode(),
        domain.encode(),
        private_key(domain),
        include_headers=list(headers),
        canonicalize=(b"relaxed", b"relaxed"),
    )
    return bytes(signature) + data


def from_domain(message: EmailMessage) -> str:
    return parseaddr(str(message["From"]))[1].rpartition("@")[2].lower()
