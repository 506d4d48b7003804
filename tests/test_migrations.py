"""Migration checksums on a real PostgreSQL (services/runtime/db.py): a changed applied migration
stops the start with a message naming the file; rows from before checksums get theirs filled."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from services.runtime import db

PROBE = Path(__file__).parent / "probe_migrations"


def probe_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(PROBE, folder)
    return folder


async def recorded(database_url: str, schema: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")
        return {r["version"]: r["checksum"] for r in rows}
    finally:
        await conn.close()


async def test_applied_migrations_record_their_checksum(empty_database_url: str, tmp_path: Path) -> None:
    folder = probe_copy(tmp_path)
    assert await db.migrate(empty_database_url, "probe", folder) == ["runtime_0001_outbox_and_inbox", "0001_probe"]
    assert await recorded(empty_database_url, "probe") == {
        "runtime_0001_outbox_and_inbox": db.checksum(db.RUNTIME_MIGRATIONS / "0001_outbox_and_inbox.sql"),
        "0001_probe": db.checksum(folder / "0001_probe.sql"),
    }
    (folder / "0002_more.sql").write_text("ALTER TABLE seen ADD COLUMN note text;\n")
    assert await db.migrate(empty_database_url, "probe", folder) == ["0002_more"]
    assert (await recorded(empty_database_url, "probe"))["0002_more"] == db.checksum(folder / "0002_more.sql")


async def test_a_changed_applied_migration_stops_the_start_and_names_the_file(
    empty_database_url: str, tmp_path: Path
) -> None:
    folder = probe_copy(tmp_path)
    await db.migrate(empty_database_url, "probe", folder)
    before = await recorded(empty_database_url, "probe")
    probe = folder / "0001_probe.sql"
    original = probe.read_text()
    probe.write_text(original.replace("name     text NOT NULL", "name     text"))
    (folder / "0002_more.sql").write_text("CREATE TABLE more (id int);\n")
    with pytest.raises(db.MigrationChanged) as raised:
        await db.migrate(empty_database_url, "probe", folder)
    message = str(raised.value)
    assert message.startswith("migration probe/0001_probe.sql was changed after it was applied (checksum ")
    assert before["0001_probe"] is not None and before["0001_probe"][:12] in message
    assert "restore it and add a new migration instead" in message
    assert await recorded(empty_database_url, "probe") == before  # nothing applied: 0002 waits

    probe.write_text(original.replace("\n", "\r\n"))  # a CRLF checkout of the same file is no change
    assert await db.migrate(empty_database_url, "probe", folder) == ["0002_more"]


async def test_rows_applied_before_checksums_get_theirs_without_an_alarm(
    empty_database_url: str, tmp_path: Path
) -> None:
    folder = probe_copy(tmp_path)
    conn = await asyncpg.connect(empty_database_url)
    try:  # an installation from before checksums: the old table, the migrations applied
        await conn.execute("CREATE SCHEMA probe")
        await conn.execute(
            "CREATE TABLE probe.schema_migrations"
            " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute("SET search_path TO probe")
        await conn.execute((db.RUNTIME_MIGRATIONS / "0001_outbox_and_inbox.sql").read_text())
        await conn.execute((folder / "0001_probe.sql").read_text())
        await conn.execute(
            "INSERT INTO probe.schema_migrations (version) VALUES ('runtime_0001_outbox_and_inbox'), ('0001_probe')"
        )
    finally:
        await conn.close()
    assert await db.migrate(empty_database_url, "probe", folder) == []
    assert await recorded(empty_database_url, "probe") == {
        "runtime_0001_outbox_and_inbox": db.checksum(db.RUNTIME_MIGRATIONS / "0001_outbox_and_inbox.sql"),
        "0001_probe": db.checksum(folder / "0001_probe.sql"),
    }
    (folder / "0001_probe.sql").write_text("CREATE TABLE seen (event_id uuid PRIMARY KEY);\n")
    with pytest.raises(db.MigrationChanged, match=r"probe/0001_probe\.sql"):  # from now on, guarded
        await db.migrate(empty_database_url, "probe", folder)
