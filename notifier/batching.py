"""Group commit for the delivery log: the claims and "sent" records of concurrent sends share transactions.

Every send still claims its key just before it goes to SMTP (never a whole fan-out ahead: a key
claimed but not yet sent would become ``uncertain`` after a crash, and never be sent; an email's
envelope goes out while its claim commits, DATA only after: ``claim_soon``) and is
recorded after the server's 250. What changes is how many commits that takes: the claims of the
sends waiting at the same moment go in one statement, and a "sent" record waits (a few
milliseconds at most) for the next claim to share its transaction — recorded before that claim,
so a crash while a send is in flight leaves only the keys in flight ``sending``, as before.
:meth:`DeliveryBatcher.flush` writes the records still waiting; a fan-out calls it before it ends,
so no key stays ``sending`` once its event is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from notifier.repository import Claim, Deliveries

LINGER_S = 0.005
"""How long a "sent" record waits for a claim to share a transaction with, before it is written alone."""


class DeliveryBatcher:
    def __init__(self, deliveries: Deliveries, linger_s: float = LINGER_S) -> None:
        self.deliveries = deliveries
        self.linger_s = linger_s
        self._claims: dict[str, tuple[Claim, asyncio.Future[bool]]] = {}
        self._later: list[tuple[Claim, asyncio.Future[bool]]] = []
        """Claims of a key already waiting in ``_claims``: the next batch (as two claims one after the other)."""
        self._sent: list[Claim] = []
        self._next: asyncio.Future[None] | None = None
        """Done when the batch that will write what is waiting now has committed."""
        self._current: asyncio.Future[None] | None = None
        """Done when the batch being written has committed."""
        self._urgent = False
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def claim(self, key: str, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """:meth:`Deliveries.claim`, sharing a transaction with the claims and records waiting with it."""
        return await self.claim_soon(key, event_id, channel, recipient)

    def claim_soon(self, key: str, event_id: uuid.UUID, channel: str, recipient: str) -> asyncio.Future[bool]:
        """:meth:`claim`, started now: the future says once the claim has committed (the caller
        can do other work meanwhile, as ``Mailer.send_email`` sends the SMTP envelope)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # an error nobody awaited (the send was cancelled meanwhile) is no "never retrieved" warning
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        entry = (Claim(key, event_id, channel, recipient), future)
        if key in self._claims:
            self._later.append(entry)
        else:
            self._claims[key] = entry
        self._start()
        return future

    def sent(self, key: str, event_id: uuid.UUID, channel: str, recipient: str) -> None:
        """Record ``key`` (claimed with these values) as sent, with the next claim or within
        ``linger_s``; :meth:`flush` waits for it."""
        self._sent.append(Claim(key, event_id, channel, recipient))
        self._start()

    async def flush(self) -> None:
        """Wait until everything recorded or claimed before now is committed (raises what the write raised)."""
        if self._sent or self._claims or self._later:
            self._start(urgent=True)
            assert self._next is not None
            await asyncio.shield(self._next)
        elif self._current is not None:
            await asyncio.shield(self._current)

    def _start(self, urgent: bool = False) -> None:
        if self._next is None:
            self._next = _future()
        if urgent or self._claims:
            self._urgent = True
            self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._sent or self._claims or self._later:
            if not self._urgent:  # only records waiting: give a claim a moment to come and share the commit
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.linger_s):
                        await self._wake.wait()
            done, self._next = self._next or _future(), None
            self._current = done
            claims, sent, later = self._claims, self._sent, self._later
            self._claims, self._sent, self._later = {}, [], []
            recorded = {r.key for r in sent}
            # a key recorded in this batch and claimed again: claimed in the next one, after the record
            deferred = [claims.pop(key) for key in [k for k in claims if k in recorded]]
            for claim, future in deferred + later:
                if claim.key in self._claims:
                    self._later.append((claim, future))
                else:
                    self._claims[claim.key] = (claim, future)
            self._urgent = bool(self._claims)
            try:
                claimed = await self.deliveries.record_and_claim(sent, [c for c, _ in claims.values()])
            except BaseException as exc:
                self._sent[:0] = sent  # not written: the next batch (or flush) tries again
                waiting: list[asyncio.Future[bool] | asyncio.Future[None]] = [f for _, f in claims.values()]
                waiting.append(done)
                if not (self._claims or self._later) and self._next is not None:
                    waiting.append(self._next)  # nothing to try again for now: its flushers hear it too
                    self._next = None
                for waiter in waiting:
                    if waiter.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        waiter.cancel()
                    else:
                        waiter.set_exception(exc)
                self._current = None
                if not isinstance(exc, Exception):
                    raise
                if not (self._claims or self._later):
                    return  # the records wait for the next claim or flush
                continue
            for key, (_, future) in claims.items():
                if not future.done():
                    future.set_result(key in claimed)
            if not done.done():
                done.set_result(None)
            self._current = None


def _future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # a flush nobody waited for is fine
    return future
