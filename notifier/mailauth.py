"""Who sent an email reply: the ``From:`` header is believed only when the sender's domain vouches for it.

A reply files a report or a comment as the person its reply address was made for, so the inbound
server (notifier.replies) must know the ``From:`` address is not forged. Two kinds of proof count,
chosen by ``CONVOY_INBOUND_SENDER_AUTH``:

- ``dkim``: a valid DKIM signature (dkimpy) whose signing domain ``d=`` is aligned with the
  ``From:`` domain and which covers the ``From:`` header (and the whole body: no ``l=``);
- ``trusted-relay``: the topmost ``Authentication-Results`` header written by the receiving mail
  server named by ``CONVOY_INBOUND_TRUSTED_AUTHSERV_ID`` says ``dmarc=pass`` or an aligned
  ``dkim=pass`` for the ``From:`` domain (headers lower down, or from another authserv-id, are
  whatever the sender wrote and count for nothing);
- ``dkim-or-relay``: either; ``off``: the header is believed (local development on loopback).

Alignment is relaxed and conservative: the domains are equal, or one is a subdomain of the other
(``mail.example.com`` signs for ``example.com`` and the other way round). Sibling subdomains, which
DMARC aligns through the public suffix list, are not: no list is needed, and nothing is aligned
that should not be.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

import dkim
import structlog

log = structlog.get_logger(__name__)

DnsFunc = Callable[..., bytes | None]
"""dkimpy's TXT lookup: ``(name: bytes, timeout: int = 5) -> bytes | None``."""
DNS_TIMEOUT_S = 5
MODES = ("dkim", "trusted-relay", "dkim-or-relay", "off")
TEMPORARY = "dkim_dns_temporary"
"""The key could not be looked up (DNS timeout): answered 451, not 550."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    how: str
    """dkim:<d=>, relay:<method>, off, or why not (for the log and the metric)."""


def from_domain(message: EmailMessage) -> str | None:
    """The domain of the one address in the one ``From:`` header; None when there is not exactly one."""
    headers = message.get_all("From", [])
    addresses = [a for _, a in getaddresses([str(h) for h in headers]) if a]
    if len(headers) != 1 or len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return _domain(addresses[0].rpartition("@")[2])


def _domain(value: str) -> str:
    return value.strip().strip(".").lower()


def aligned(signer: str, author: str) -> bool:
    """Relaxed alignment without the public suffix list: equal, or one a subdomain of the other."""
    signer, author = _domain(signer), _domain(author)
    if not signer or not author:
        return False
    return signer == author or author.endswith("." + signer) or signer.endswith("." + author)


# --- DKIM ------------------------------------------------------------------------------------------
def verify_dkim(raw: bytes, author: str, dnsfunc: DnsFunc | None = None) -> Verdict:
    """A valid DKIM signature aligned with ``author`` (blocking: DNS lookups; run it in a thread)."""
    try:
        checker = dkim.DKIM(raw, minkey=1024, timeout=DNS_TIMEOUT_S)
    except Exception:
        return Verdict(False, "dkim_unparsable")
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    if count == 0:
        return Verdict(False, "dkim_none")
    why = "dkim_fail"
    lookup: DnsFunc = dnsfunc or dkim.get_txt
    timed_out = False

    def resolve(name: bytes, timeout: int = DNS_TIMEOUT_S) -> bytes | None:
        nonlocal timed_out
        try:
            return lookup(name, timeout=timeout)
        except dkim.DnsTimeoutError:  # dkimpy reads it as "not valid"; it is "not known yet"
            timed_out = True
            raise

    for idx in range(count):
        try:
            valid = checker.verify(idx=idx, dnsfunc=resolve)
        except dkim.DKIMException as exc:
            log.info("DKIM signature not valid", error=str(exc))
            continue
        if not valid:
            continue
        sig = checker.signature_fields
        signer = (sig.get(b"d") or b"").decode("ascii", "replace")
        signed = {h.strip().lower() for h in (sig.get(b"h") or b"").split(b":")}
        if b"from" not in signed:
            why = "dkim_from_unsigned"
        elif b"l" in sig:
            why = "dkim_partial_body"  # l=: anything could follow the signed part
        elif not aligned(signer, author):
            why = "dkim_unaligned"
        else:
            return Verdict(True, f"dkim:{signer}")
    return Verdict(False, TEMPORARY if timed_out and why == "dkim_fail" else why)


# --- Authentication-Results of a trusted relay (RFC 8601) -------------------------------------------
_COMMENT = re.compile(r"\([^()]*\)")
_PAIR = re.compile(r'([A-Za-z0-9_.-]+(?:/[0-9]+)?)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


def _uncomment(value: str) -> str:
    while True:
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            return value
        value = stripped


def trusted_results(message: EmailMessage, authserv_id: str) -> list[dict[str, str]] | None:
    """The results in the topmost ``Authentication-Results`` header of ``authserv_id``: one dict per
    method (``method``, ``result`` and its properties such as ``header.d``); None when there is none."""
    wanted = authserv_id.strip().lower()
    for header in message.get_all("Authentication-Results", []):
        parts = _uncomment(str(header)).split(";")
        serv = parts[0].split()
        if not serv or serv[0].lower() != wanted:
            continue
        results = []
        for part in parts[1:]:
            pairs = [(k.lower(), v.strip('"')) for k, v in _PAIR.findall(part)]
            if not pairs:
                continue
            method, result = pairs[0]
            entry = {"method": method.split("/")[0], "result": result.lower()}
            entry.update({k: v for k, v in pairs[1:]})
            results.append(entry)
        return results  # only the topmost one of that id: the relay's own, above whatever the sender wrote
    return None


def verify_relay(message: EmailMessage, author: str, authserv_id: str) -> Verdict:
    if not authserv_id.strip():
        return Verdict(False, "relay_unconfigured")
    results = trusted_results(message, authserv_id)
    if results is None:
        return Verdict(False, "relay_none")
    for r in results:
        if r["result"] != "pass":
            continue
        if r["method"] == "dmarc" and _domain(r.get("header.from", author)) == author:
            return Verdict(True, "relay:dmarc")
        if r["method"] == "dkim":
            signer = r.get("header.d") or r.get("header.i", "").rpartition("@")[2]
            if signer and aligned(signer, author):
                return Verdict(True, "relay:dkim")
    return Verdict(False, "relay_no_pass")


# --- the policy ------------------------------------------------------------------------------------
async def authenticate(
    mode: str, raw: bytes, message: EmailMessage, authserv_id: str, dnsfunc: DnsFunc | None = None
) -> Verdict:
    """Whether the ``From:`` of this reply is vouched for under ``mode`` (CONVOY_INBOUND_SENDER_AUTH)."""
    if mode == "off":
        return Verdict(True, "off")
    author = from_domain(message)
    if author is None:
        return Verdict(False, "from_not_single")
    relay = Verdict(False, "relay_not_asked")
    if mode in ("trusted-relay", "dkim-or-relay"):
        relay = verify_relay(message, author, authserv_id)
        if relay.ok or mode == "trusted-relay":
            return relay
    if mode in ("dkim", "dkim-or-relay"):
        signed = await asyncio.to_thread(verify_dkim, raw, author, dnsfunc)
        if signed.ok or mode == "dkim":
            return signed
        return Verdict(False, f"{relay.how}+{signed.how}")
    return Verdict(False, f"unknown_mode_{mode}")
