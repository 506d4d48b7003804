"""PostgreSQL: a bounded pool per service, and per-service migrations under an advisory lock.

Each service owns one PostgreSQL schema; its pool sets ``search_path`` to it, so its SQL names
its own tables unqualified and cannot reach another service's by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import msgspec
import structlog

from services.runtime.errors import Unavailable
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
RUNTIME_MIGRATIONS = Path(str(resources.files("services.runtime") / "migrations"))

# Errors that mean "the database is not there right now", as opposed to a bug or bad data.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08: the connection failed
    asyncpg.exceptions.InterfaceError,
)
BROKEN_PROTOCOL: tuple[type[BaseException], ...] = (asyncpg.exceptions.InternalClientError,)
"""asyncpg lost track of the connection's protocol state: that connection is closed, the caller told
the database is unavailable (:meth:`Database.connection`)."""


class PoolConnection(asyncpg.Connection):
    """A pooled connection, given back without asyncpg's reset statement.

    asyncpg resets a connection on every release with one more round trip (``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), which undoes session state.
    Pool users here take none, so that statement is skipped: session-level advisory locks and
    listening for notifications live on connections of their own (the outbox relay, the scheduler's leader lock,
    migrations), settings are ``SET LOCAL``, cursors do not outlive their transaction
    (tests/test_contracts.py keeps it that way). An open transaction is still rolled back on
    release and listeners are dropped: asyncpg does that whatever the reset statement.
    """

    def get_reset_query(self) -> str:
        return ""


class Database:
    """A pool whose every wait is bounded and whose outages surface as :class:`Unavailable`."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
                try:
                    yield cast(asyncpg.Connection, conn)  # a pool proxy behaves as a connection
                except BROKEN_PROTOCOL:
                    # The connection's protocol state is broken: seen when PostgreSQL shuts down under an
                    # idle pooled connection (its FATAL arrives before the socket closes, and the next
                    # BEGIN finds "another operation (2) is in progress"). It goes, not back to the pool.
                    conn.terminate()
                    raise
        except (*TRANSIENT_DB_ERRORS, *BROKEN_PROTOCOL) as exc:
            raise Unavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1", timeout=2)

    async def close(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            self.pool.terminate()


async def connect(settings: Settings, schema: str) -> Database:
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout,
        timeout=settings.db_acquire_timeout,
        server_settings={"search_path": schema, "application_name": f"convoy-{schema}"},
        connection_class=PoolConnection,
    )
    assert pool is not None
    return Database(pool, settings.db_acquire_timeout)


def _migration_files(folder: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".sql":
            if not _MIGRATION.match(path.name):
                raise ValueError(f"migration {path} must be named NNNN_lower_case.sql")
            found.append((path.stem, path))
    return found


class MigrationChanged(RuntimeError):
    """An applied migration's file differs from what was applied: the start stops."""


def checksum(path: Path) -> str:
    """sha256 of a migration file (line endings normalised, so a CRLF checkout is the same file)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


async def migrate(database_url: str, schema: str, folder: Path, *, timeout: float = 60.0) -> list[str]:
    """Apply the runtime's and the service's pending migrations to ``schema``, once, under a lock.

    Returns the versions applied now. Safe to run from every replica at once. Each applied file's
    sha256 is recorded; when an applied file has changed since, nothing is applied and
    :class:`MigrationChanged` names it (a change goes into a new migration). Rows applied before
    checksums were recorded get theirs from the file as it is now.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", schema):
        raise ValueError(f"bad schema name {schema!r}")
    plan = [(f"runtime_{v}", p, f"runtime/{p.name} (schema {schema})") for v, p in _migration_files(RUNTIME_MIGRATIONS)]
    plan += [(v, p, f"{schema}/{p.name}") for v, p in _migration_files(folder)]
    conn = await asyncpg.connect(database_url, timeout=timeout, command_timeout=timeout)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"convoy-migrate:{schema}")
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), checksum text)"
            )
            await conn.execute(f"ALTER TABLE {schema}.schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
            done = {
                r["version"]: r["checksum"]
                for r in await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")
            }
            sums = {version: checksum(path) for version, path, _ in plan}
            for version, _, label in plan:
                recorded = done.get(version)
                if recorded is not None and recorded != sums[version]:
                    raise MigrationChanged(
                        f"migration {label} was changed after it was applied (checksum {recorded[:12]}…, "
                        f"now {sums[version][:12]}…); restore it and add a new migration instead"
                    )
            unrecorded = [v for v, _, _ in plan if v in done and done[v] is None]
            if unrecorded:  # applied before checksums were recorded: take the files as they are
                await conn.executemany(
                    f"UPDATE {schema}.schema_migrations SET checksum = $2 WHERE version = $1",
                    [(v, sums[v]) for v in unrecorded],
                )
            for version, path, _ in plan:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path TO {schema}")
                    await conn.execute(path.read_text())
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, checksum) VALUES ($1, $2)",
                        version,
                        sums[version],
                    )
                applied.append(version)
                log.info("migration applied", schema=schema, version=version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"convoy-migrate:{schema}")
    finally:
        await conn.close()
    return applied


T = TypeVar("T")


def struct(row: asyncpg.Record | Mapping[str, Any], type_: type[T], **extra: Any) -> T:
    """A row (an ``asyncpg.Record`` or a dict) as a msgspec struct: columns by field name (columns
    without a field are left out, so alias a column in SQL when its name differs), ``extra`` for
    fields computed outside SQL. Values are checked against the field types."""
    return msgspec.convert({**dict(row), **extra}, type_)


def structs(rows: Iterable[asyncpg.Record | Mapping[str, Any]], type_: type[T]) -> list[T]:
    """:func:`struct` for each row."""
    return [struct(r, type_) for r in rows]
