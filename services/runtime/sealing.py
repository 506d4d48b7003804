"""Secrets on the bus: what an email request says about its recipient travels sealed for the notifier.

An ``email.requested`` message carries a recipient's address and name and, for sign-in links and
invitations, a one-time token. Whoever can read the messages stream (a subscriber, the stream's files on
disk, a dead letter, ``nats stream view``) must learn none of it. So the producer seals those fields with
the notifier's public X25519 key (libsodium's sealed box: an ephemeral key pair per message, X25519 +
XSalsa20-Poly1305), and only the notifier, holding the private key, opens them. Producers hold only the
public key (``CONVOY_NOTIFIER_BOX_PUBLIC_KEY``), the notifier the private one (``CONVOY_NOTIFIER_BOX_KEY``);
``convoy up`` generates the pair into the data folder.

In clear stay the delivery key (ids and hashes, never a token), the template and the language, and the
subject's last token: a routing tag of the recipient (:func:`recipient_tag`, a truncated SHA-256 of the
address, the one ``person.erased`` carries), so that an erasure can purge the person's messages by
subject (docs/architecture.md "Secrets on the bus").

A sealed box proves nothing about its sender (anyone with the public key can seal): who may publish to
the message subjects is NATS's permissions' business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import msgspec
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from schemas import events as ev
from schemas.subjects import Subjects

TAG_HEX = 32
"""Hex digits of the address's SHA-256 in a message subject (128 bits: no two addresses share one)."""


class Sealed(msgspec.Struct, frozen=True, kw_only=True):
    """The part of an email request only the notifier reads."""

    to_email: str
    to_name: str = ""
    params: dict[str, str] = {}


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Sealed).decode


class SealingError(ValueError):
    """A key that is not one, or a sealed part that does not open with this key."""


def generate() -> tuple[str, str]:
    """A new key pair: (private, public), base64."""
    key = PrivateKey.generate()
    return _b64(bytes(key)), _b64(bytes(key.public_key))


def public_of(private_key: str) -> str:
    """The public half of the (first, during a rotation: the new) private key."""
    return _b64(bytes(_private(private_key.split(",")[0]).public_key))


def email_sha256(address: str) -> str:
    """Hex SHA-256 of the trimmed, lower-cased address (as ``person.erased`` carries it)."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def recipient_tag(address: str) -> str:
    """The subject token that routes an email request by its recipient (the hashed address, truncated)."""
    return email_sha256(address)[:TAG_HEX]


def tag_of_hash(sha256_hex: str) -> str:
    """The same tag from the hex SHA-256 ``person.erased`` carries."""
    return sha256_hex[:TAG_HEX]


def addressed(subjects: Subjects, message: ev.EmailRequested, public_key: str) -> tuple[str, ev.EmailRequested]:
    """Where a producer publishes ``message`` (its recipient's subject), and the message sealed."""
    return subjects.addressed(ev.EmailRequested, recipient_tag(message.to_email)), seal(message, public_key)


def seal(message: ev.EmailRequested, public_key: str) -> ev.EmailRequested:
    """The message with recipient, name and params sealed for the notifier (nothing of them left in clear)."""
    if message.sealed:
        return message
    box = SealedBox(_public(public_key))
    part = Sealed(to_email=message.to_email, to_name=message.to_name, params=message.params)
    return msgspec.structs.replace(message, to_email="", to_name="", params={}, sealed=_b64(box.encrypt(_encode(part))))


def unseal(message: ev.EmailRequested, private_key: str) -> ev.EmailRequested:
    """The message as it was asked for (a message that was never sealed is returned as it is).

    ``private_key`` may list several keys, comma separated (a rotation: the new one first, the old one
    until what was sealed for it is sent); each is tried."""
    if not message.sealed:
        return message
    try:
        sealed = base64.b64decode(message.sealed, validate=True)
    except binascii.Error as exc:
        raise SealingError(f"the sealed part of {message.template!r} is not base64") from exc
    for key in private_key.split(","):
        try:
            part = _decode(SealedBox(_private(key)).decrypt(sealed))
            break
        except (CryptoError, msgspec.DecodeError):
            continue
    else:
        raise SealingError(f"the sealed part of {message.template!r} does not open with this notifier's key")
    return msgspec.structs.replace(message, to_email=part.to_email, to_name=part.to_name, params=part.params, sealed="")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _key_bytes(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise SealingError(f"{what} is not base64") from exc
    if len(raw) != 32:
        raise SealingError(f"{what} must be 32 bytes (base64 of an X25519 key), not {len(raw)}")
    return raw


def _public(value: str) -> PublicKey:
    return PublicKey(_key_bytes(value, "CONVOY_NOTIFIER_BOX_PUBLIC_KEY"))


def _private(value: str) -> PrivateKey:
    return PrivateKey(_key_bytes(value, "CONVOY_NOTIFIER_BOX_KEY"))
