"""Requests for keys that arrive while one is out, sent together as the next one (issue #21).

A process that asks another service one small question per request (the API a token's owner, the notifier a
convoy's recipients) pays for each question a NATS message each way, a decode, a handler and a statement in
the other service. :class:`Coalescer` sends a key's question at once when nothing is out (no wait when it is
alone), and otherwise keeps the keys that arrive meanwhile for the next request, which carries all of them:
under load the questions of many requests share one message and one statement. The answer to each key is
the other service's as of the request that carried it, exactly as a request of its own would give it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a waiter's outcome as seen: its caller may have gone away (no "exception never retrieved")."""
    if not future.cancelled():
        future.exception()


class Coalescer(Generic[K, V]):
    """``await get(key)``: ``fetch(keys)`` answers a list of keys with one value each, in their order.

    At most ``at_once`` fetches are out at a time, each with at most ``max_keys`` keys; a key asked for twice
    before its fetch goes out is asked once. An exception of ``fetch`` is every waiter's of that fetch. A
    waiter that is cancelled does not cancel the fetch (the others still get their answers)."""

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[Sequence[V]]], *, max_keys: int = 256, at_once: int = 1
    ) -> None:
        self.fetch = fetch
        self.max_keys = max(1, max_keys)
        self.at_once = max(1, at_once)
        self._pending: dict[K, asyncio.Future[V]] = {}
        self._due = False
        self._out: set[asyncio.Task[None]] = set()
        self.fetches = 0
        """Fetches made (with :attr:`keys`: how many keys each carried on average)."""
        self.keys = 0

    async def get(self, key: K) -> V:
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._pending[key] = loop.create_future()
            future.add_done_callback(_retrieve)
            self._schedule(loop)
        return await asyncio.shield(future)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # at the end of this loop tick: the keys of requests that arrived together go together
        if self._pending and not self._due and len(self._out) < self.at_once:
            self._due = True
            loop.call_soon(self._dispatch, loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = False
        if not self._pending or len(self._out) >= self.at_once:
            return
        keys = list(self._pending)[: self.max_keys]
        waiting = {key: self._pending.pop(key) for key in keys}
        self.fetches += 1
        self.keys += len(keys)
        task = loop.create_task(self._run(waiting))
        self._out.add(task)
        task.add_done_callback(self._done)
        self._schedule(loop)  # more than max_keys, or room for another fetch

    def _done(self, task: asyncio.Task[None]) -> None:
        self._out.discard(task)
        self._schedule(task.get_loop())  # the keys that arrived meanwhile

    async def _run(self, waiting: dict[K, asyncio.Future[V]]) -> None:
        try:
            values = await self.fetch(list(waiting))
            if len(values) != len(waiting):
                raise RuntimeError(f"asked for {len(waiting)} keys, answered {len(values)}")
            for future, value in zip(waiting.values(), values, strict=True):
                if not future.done():
                    future.set_result(value)
        except Exception as exc:  # the other service away, a timeout: each waiter gets it, as it would alone
            for future in waiting.values():
                if not future.done():
                    future.set_exception(exc)
        finally:
            for future in waiting.values():  # cancelled (shutdown): nobody waits for ever
                future.cancel()
