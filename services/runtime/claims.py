"""Actor claims: a service acts for a person only on a claim the edge signed.

Requests carry the acting person in their body (``actor: api.Actor``), and a body is whatever its
sender wrote. So the API, which establishes the person (token or session), also **signs** the actor:
a short-lived claim in the ``Convoy-Actor`` NATS header, signed with an Ed25519 private key that only
the API and the operator's tools (CLI, demo loader: they run with the data folder) hold
(``CONVOY_ACTOR_SIGNING_KEY``). Services hold only the public key (``CONVOY_ACTOR_PUBLIC_KEY``).

- **Client** (:class:`~services.runtime.rpc.RpcClient`): a request whose ``actor`` is a person (or the
  admin token) gets a claim: signed on the spot where the process holds the private key (the edge),
  else the claim of the request being handled, forwarded (a service asking another on a person's
  behalf). Anonymous and system actors get none.
- **Serving side** (:func:`~services.runtime.rpc.endpoint`, for every operation whose request has an
  ``actor``): an anonymous actor passes; a person's actor needs a valid, unexpired claim (else 401)
  and may claim no more than it (another person, or admin/facilitator rights the claim lacks: 403).
  The verified claim is bound for the handler, so its own requests forward it.
- **Email replies**: the notifier's inbound mail server files a reply as the person its signed reply
  address names. It holds a key of its own (``CONVOY_REPLY_SIGNING_KEY``), and a claim signed with it
  (``r1.`` tokens) is accepted only for a plain person (no admin or facilitator rights) and only on the
  operations a reply becomes (:data:`REPLY_OPERATIONS`: a report, a comment). So the notifier, which
  talks to the internet by mail, can never act as an admin, a facilitator, or on anything else.
- **The system** (``api.SYSTEM``: the scheduler, the notifier, a service reading through another)
  carries no claim: who may send a request at all, as the system or not, is decided by NATS
  permissions per process role, generated from each operation's declared ``callers``. A system actor
  is never a person (``is_system`` with a person or rights is refused).

Token: ``c1.`` (edge) or ``r1.`` (replies), then ``<base64url JSON {sub, adm, fac, iat, exp}>.<base64url
Ed25519 signature of what precedes>``.
No audience: the same claim travels on the nested requests its request causes. Cost: the signer keeps a
token per actor for half its life, the verifier remembers tokens it checked until they expire, so a
signature is made or checked about once per person per half minute and process, not per request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas import api
from schemas.milestones import Milestones
from services.runtime.errors import Forbidden, Unauthenticated
from services.runtime.settings import Settings, SettingsError

HEADER = "Convoy-Actor"
"""The NATS request header carrying the signed actor claim."""
KEY_FILE = "actor-signing-key"
"""The private key's file in the data folder on the embedded default (`convoy up` makes it)."""
REPLY_KEY_FILE = "reply-signing-key"
"""The notifier's key for email replies, in the data folder on the embedded default."""

EDGE = b"c1."
"""Prefix of a claim signed by the edge's key (any actor)."""
REPLY = b"r1."
"""Prefix of a claim signed by the notifier's reply key (a plain person, on :data:`REPLY_OPERATIONS` only)."""
REPLY_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    (op.service, op.name) for op in (Milestones.REPORT_SUBMIT, Milestones.COMMENT_ADD)
)
"""What an emailed reply becomes: the only operations a reply-key claim is accepted for."""
_MAX_TOKEN = 512
_LEEWAY_S = 5.0
"""Clock difference between processes that is tolerated (expiry and issue time)."""
_CACHE_MAX = 10_000


class _Claim(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sub: uuid.UUID | None
    adm: bool
    fac: bool
    iat: int
    exp: int


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Claim).decode
_forwarded: ContextVar[str | None] = ContextVar("convoy_actor_claim", default=None)


# --- keys ----------------------------------------------------------------------------------------
def _b64decode(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise SettingsError(f"not base64: {exc}") from exc


@functools.lru_cache(maxsize=8)
def load_private(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or base64 of its 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SettingsError("not an Ed25519 private key (CONVOY_ACTOR_/REPLY_SIGNING_KEY)")
        return key
    raw = _b64decode(text)
    if len(raw) != 32:
        raise SettingsError("an Ed25519 private key is 32 bytes (base64) or PEM (CONVOY_ACTOR_/REPLY_SIGNING_KEY)")
    return Ed25519PrivateKey.from_private_bytes(raw)


@functools.lru_cache(maxsize=8)
def load_public(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of its 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise SettingsError("not an Ed25519 public key (CONVOY_ACTOR_/REPLY_PUBLIC_KEY)")
        return key
    raw = _b64decode(text)
    if len(raw) != 32:
        raise SettingsError("an Ed25519 public key is 32 bytes (base64) or PEM (CONVOY_ACTOR_/REPLY_PUBLIC_KEY)")
    return Ed25519PublicKey.from_public_bytes(raw)


def new_private_pem() -> str:
    """A new Ed25519 private key as PEM (PKCS#8)."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def private_text(private: Ed25519PrivateKey) -> str:
    """``private`` as base64 of its 32 bytes (one line: fits an environment variable or a secret)."""
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def public_text(private: Ed25519PrivateKey) -> str:
    """The public half of ``private`` as base64 of its 32 bytes (one line: fits an environment variable)."""
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def ensure_key_file(path: Path) -> str:
    """The data folder's private key (PEM), made once, readable only by its owner."""
    if path.exists():
        return path.read_text().strip()
    pem = new_private_pem()
    path.touch(mode=0o600)
    path.write_text(pem)
    return pem.strip()


def private_key(settings: Settings, *, data_folder: bool = False) -> Ed25519PrivateKey | None:
    """The signing key from CONVOY_ACTOR_SIGNING_KEY; with ``data_folder`` (the operator's tools) also
    from the data folder's key file."""
    if settings.actor_signing_key:
        return load_private(settings.actor_signing_key)
    if data_folder:
        path = settings.data_path / KEY_FILE
        if path.exists():
            return load_private(path.read_text())
    return None


def public_key(settings: Settings) -> Ed25519PublicKey | None:
    """The key services check claims with: CONVOY_ACTOR_PUBLIC_KEY, or the half of CONVOY_ACTOR_SIGNING_KEY."""
    if settings.actor_public_key:
        return load_public(settings.actor_public_key)
    if settings.actor_signing_key:
        return load_private(settings.actor_signing_key).public_key()
    return None


def reply_private_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The notifier's key for email replies (CONVOY_REPLY_SIGNING_KEY)."""
    return load_private(settings.reply_signing_key) if settings.reply_signing_key else None


def reply_public_key(settings: Settings) -> Ed25519PublicKey | None:
    """The key services check reply claims with: CONVOY_REPLY_PUBLIC_KEY, or the half of CONVOY_REPLY_SIGNING_KEY."""
    if settings.reply_public_key:
        return load_public(settings.reply_public_key)
    if settings.reply_signing_key:
        return load_private(settings.reply_signing_key).public_key()
    return None


# --- signing and checking ------------------------------------------------------------------------
def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign(
    key: Ed25519PrivateKey, actor: api.Actor, *, lifetime_s: float, now: float | None = None, prefix: bytes = EDGE
) -> str:
    """A claim for ``actor`` valid ``lifetime_s`` from ``now`` (``prefix`` names the key: edge or reply)."""
    issued = int(time.time() if now is None else now)
    claim = _Claim(
        sub=actor.person_id,
        adm=actor.is_admin,
        fac=actor.is_facilitator,
        iat=issued,
        exp=issued + max(1, int(lifetime_s)),
    )
    signed = prefix + _b64(_encode(claim))
    return (signed + b"." + _b64(key.sign(signed))).decode()


class Signer:
    """Signs actor claims (the edge, the operator's tools); keeps each actor's token for half its life."""

    def __init__(self, key: Ed25519PrivateKey, lifetime_s: float, *, prefix: bytes = EDGE) -> None:
        self.key = key
        self.lifetime_s = lifetime_s
        self.prefix = prefix
        self._tokens: dict[api.Actor, tuple[float, str]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, data_folder: bool = False) -> Signer:
        key = private_key(settings, data_folder=data_folder)
        if key is None:
            raise SettingsError(
                "CONVOY_ACTOR_SIGNING_KEY is not set: this process cannot act for anyone "
                "(`convoy up` makes one in the data folder)"
            )
        return cls(key, settings.actor_claim_seconds)

    def token(self, actor: api.Actor) -> str:
        now = time.time()
        kept = self._tokens.get(actor)
        if kept is not None and kept[0] > now:
            return kept[1]
        token = sign(self.key, actor, lifetime_s=self.lifetime_s, now=now, prefix=self.prefix)
        if len(self._tokens) >= _CACHE_MAX:
            self._tokens.clear()
        self._tokens[actor] = (now + self.lifetime_s / 2, token)
        return token


class Verifier:
    """Checks claims with the public keys; remembers a checked token until it expires."""

    def __init__(self, key: Ed25519PublicKey | None, reply_key: Ed25519PublicKey | None = None) -> None:
        self.key = key
        self.reply_key = reply_key
        self._checked: dict[str, tuple[float, api.Actor, bool]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Verifier:
        return cls(public_key(settings), reply_public_key(settings))

    def actor(self, token: str | None, *, now: float | None = None) -> api.Actor:
        """The actor an edge ``token`` vouches for; :class:`Unauthenticated` if missing, forged or expired."""
        actor, by_reply = self.claim(token, now=now)
        if by_reply:
            raise Forbidden("a reply's claim covers only filing that reply")
        return actor

    def claim(self, token: str | None, *, now: float | None = None) -> tuple[api.Actor, bool]:
        """The actor ``token`` vouches for, and whether the reply key signed it (else the edge's)."""
        now = time.time() if now is None else now
        if self.key is None:
            raise Unauthenticated("this service has no CONVOY_ACTOR_PUBLIC_KEY: it acts for no one")
        if not token:
            raise Unauthenticated("a request on a person's behalf needs a signed actor claim")
        checked = self._checked.get(token)
        if checked is not None:
            if checked[0] + _LEEWAY_S < now:
                raise Unauthenticated("the actor claim has expired")
            return checked[1], checked[2]
        claim, by_reply = self._check(token)
        if claim.exp + _LEEWAY_S < now:
            raise Unauthenticated("the actor claim has expired")
        if claim.iat > now + _LEEWAY_S:
            raise Unauthenticated("the actor claim was issued in the future")
        actor = api.Actor(person_id=claim.sub, is_admin=claim.adm, is_facilitator=claim.fac)
        if len(self._checked) >= _CACHE_MAX:
            self._checked = {t: c for t, c in self._checked.items() if c[0] + _LEEWAY_S >= now}
            if len(self._checked) >= _CACHE_MAX:
                self._checked.clear()
        self._checked[token] = (float(claim.exp), actor, by_reply)
        return actor, by_reply

    def _check(self, token: str) -> tuple[_Claim, bool]:
        raw = token.encode("ascii", "replace")
        signed, dot, signature = raw.rpartition(b".")
        if len(raw) > _MAX_TOKEN or not dot:
            raise Unauthenticated("the actor claim is malformed")
        if signed.startswith(EDGE):
            key, prefix = self.key, EDGE
        elif signed.startswith(REPLY):
            key, prefix = self.reply_key, REPLY
            if key is None:
                raise Unauthenticated("this service has no CONVOY_REPLY_PUBLIC_KEY: it files no email replies")
        else:
            raise Unauthenticated("the actor claim is malformed")
        assert key is not None
        try:
            key.verify(base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)), signed)
            payload = signed[len(prefix) :]
            return _decode(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))), prefix == REPLY
        except InvalidSignature as exc:
            raise Unauthenticated("the actor claim's signature is not valid") from exc
        except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
            raise Unauthenticated("the actor claim is malformed") from exc


def admit(actor: api.Actor, token: str | None, verifier: Verifier, operation: tuple[str, str] = ("", "")) -> str | None:
    """Check a request's ``actor`` against its claim ``token``; the claim to forward on nested requests.

    Anonymous: no claim needed (none forwarded). System: no claim (NATS permissions decide who may ask),
    but never with a person's identity or rights. Anyone else: a valid claim for that person, and no
    right in the body that the claim lacks (a caller may ask with fewer). A reply-key claim: a plain
    person, on ``operation`` (service, name) in :data:`REPLY_OPERATIONS` only."""
    if actor.is_system:
        if actor.person_id is not None or actor.is_admin or actor.is_facilitator:
            raise Forbidden("the system acts as itself, never as a person")
        return None
    if actor.person_id is None and not actor.is_admin and not actor.is_facilitator:
        return None
    claimed, by_reply = verifier.claim(token)
    if by_reply and (claimed.is_admin or claimed.is_facilitator or operation not in REPLY_OPERATIONS):
        raise Forbidden("a reply's claim covers only filing that reply")
    if (
        actor.person_id != claimed.person_id
        or (actor.is_admin and not claimed.is_admin)
        or (actor.is_facilitator and not claimed.is_facilitator)
    ):
        raise Forbidden("the request's actor claims more than its signed claim")
    return token


# --- forwarding ----------------------------------------------------------------------------------
def forwarded() -> str | None:
    """The verified claim of the request being handled in this task, if any."""
    return _forwarded.get()


@contextlib.contextmanager
def bound(token: str | None) -> Iterator[None]:
    """Bind the request's verified claim (or none) while its handler runs."""
    reset = _forwarded.set(token)
    try:
        yield
    finally:
        _forwarded.reset(reset)


def for_request(request: object, signer: Signer | None) -> str | None:
    """The claim an outgoing request carries: signed here for a person (the edge), else the forwarded one."""
    actor = getattr(request, "actor", None)
    if not isinstance(actor, api.Actor) or actor.is_system:
        return None
    if actor.person_id is None and not actor.is_admin and not actor.is_facilitator:
        return None
    if signer is not None:
        return signer.token(actor)
    return _forwarded.get()
