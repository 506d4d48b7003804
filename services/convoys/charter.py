"""The convoy's charter: the rules of the room (confidentiality, tone, no sales pitches).

- Every convoy starts with the default text below, in its language (version 1; the text follows
  the convoy's language until a facilitator writes their own). Its facilitators (and admins) change
  it; each change adds one to the version and is recorded in the audit log. A completed convoy's
  charter no longer changes (409).
- Every representative accepts the current version. Accepting the invitation accepts the charter
  implicitly (the invitation preview carries it, and the accept may name the version shown:
  ``AcceptInvitation.charter_version``, 409 if it changed since). After a change, ``GET /api/v1/me``
  shows ``charter_accepted: false`` for that convoy and the representative accepts it with
  ``POST …/charter/accept``; until then services/milestones refuses their reports and comments (409).
  Each acceptance is audited.
- services/milestones decides from a projection of charters (services/milestones/access.py
  ``Access.under_charter``): ``charter.updated`` carries each new version, ``charter.accepted`` each
  acceptance, ``person.joined`` the version accepted with the invitation. A change binds before it is
  answered: :meth:`Charters.put` sets the new version there (``Milestones.CHARTER_SET``) after its
  commit, 503 if it cannot (the event follows). An acceptance a second ago counts: where the
  projection says "not accepted", milestones asks ``MEMBERSHIP_GET`` (``charter_accepted``), exact.
- Facilitators and admins read it but do not accept it (``accepted`` is None for them); anyone
  outside the convoy gets 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from schemas import api
from schemas import events as ev
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from services.convoys import repository as repo
from services.runtime.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from services.convoys.service import ConvoysService

DEFAULT_CHARTER: dict[str, str] = {
    "de": (
        "Unsere Spielregeln im Konvoi\n"
        "\n"
        "1. Vertraulichkeit: Was Betriebe hier über Zahlen, Kunden, Mitarbeitende und Probleme berichten,"
        " bleibt im Konvoi. Wir geben nichts davon ohne Zustimmung des Betriebs weiter, auch nicht an"
        " Kolleginnen und Kollegen im eigenen Haus.\n"
        "2. Offenheit: Wir berichten ehrlich, auch über Rückschläge. Aus dem, was nicht klappt, lernen alle"
        " am meisten.\n"
        "3. Respekt: Wir bleiben freundlich und sachlich, kritisieren Vorgehen, nicht Menschen, und geben"
        " Rückmeldungen so, wie wir sie selbst bekommen möchten.\n"
        "4. Keine Werbung: Der Konvoi ist kein Vertriebskanal. Wir bieten hier keine eigenen Produkte oder"
        " Dienstleistungen an und werben nicht um Aufträge. Erfahrungen mit Werkzeugen und Anbietern teilen"
        " wir gern, neutral und ohne Provision.\n"
        "5. Gegenseitige Hilfe: Wer um Unterstützung bittet, bekommt eine Antwort. Wir teilen, was bei uns"
        " funktioniert hat, und sagen ehrlich, wenn wir etwas nicht wissen.\n"
        "6. Verlässlichkeit: Wir berichten zu jedem Termin, und wenn es einmal nicht geht, sagen wir kurz"
        " Bescheid.\n"
        "7. Datenschutz: Wir teilen keine personenbezogenen Daten von Kundinnen, Kunden oder Beschäftigten"
        " und keine Zugangsdaten.\n"
        "8. Moderation: Das Kompetenzzentrum begleitet den Konvoi. Es kann Beiträge, die gegen diese Regeln"
        " verstoßen, ausblenden und sagt der Verfasserin oder dem Verfasser, warum. Wer einen Beitrag für"
        " problematisch hält, meldet ihn der Moderation.\n"
    ),
    "en": (
        "Our ground rules in the convoy\n"
        "\n"
        "1. Confidentiality: What companies share here about figures, customers, staff and problems stays in"
        " the convoy. We pass none of it on without the company's consent, not even to colleagues in our own"
        " organisation.\n"
        "2. Openness: We report honestly, setbacks included. Everyone learns most from what does not work.\n"
        "3. Respect: We stay friendly and to the point, criticise approaches, not people, and give feedback"
        " the way we would like to receive it.\n"
        "4. No sales pitches: The convoy is not a sales channel. We do not offer our own products or services"
        " here or canvass for orders. We gladly share experience with tools and providers, neutrally and"
        " without commission.\n"
        "5. Helping each other: Whoever asks for help gets an answer. We share what worked for us and say"
        " honestly when we do not know.\n"
        "6. Reliability: We report at every check-in, and if we cannot, we say so briefly.\n"
        "7. Data protection: We share no personal data of customers or employees and no passwords or other"
        " credentials.\n"
        "8. Moderation: The competence centre accompanies the convoy. It may hide contributions that break"
        " these rules and tells their author why. If you think a contribution is a problem, flag it for the"
        " facilitators.\n"
    ),
}


def default_charter(language: str) -> str:
    return DEFAULT_CHARTER.get(language, DEFAULT_CHARTER["en"])


def charter_text(convoy: asyncpg.Record, language_column: str = "language") -> str:
    """The convoy's charter: the facilitators' text, or the default in the convoy's language."""
    text: str | None = convoy["charter_text"]
    return text if text is not None else default_charter(convoy[language_column])


def charter_of(convoy: asyncpg.Record, accepted: bool | None) -> api.Charter:
    updated_at: datetime = convoy["charter_updated_at"] or convoy["created_at"]
    return api.Charter(
        convoy_id=convoy["id"],
        text=charter_text(convoy),
        version=convoy["charter_version"],
        updated_at=updated_at,
        is_default=convoy["charter_text"] is None,
        language=convoy["language"],
        accepted=accepted,
    )


class Charters:
    def __init__(self, svc: ConvoysService) -> None:
        self.svc = svc
        self.rt = svc.rt

    async def _accepted(self, conn: asyncpg.Connection, actor: api.Actor, convoy: asyncpg.Record) -> bool | None:
        membership = await self.svc.access.member_of(conn, actor, convoy["id"])
        if membership is None:
            return None
        return bool(membership["charter_version"] >= convoy["charter_version"])

    @Convoys.CHARTER_GET
    async def get(self, req: api.AskConvoy) -> api.Charter:
        async with self.rt.db.connection() as conn:
            convoy = await self.svc.access.reader(conn, req.actor, req.convoy_id)
            return charter_of(convoy, await self._accepted(conn, req.actor, convoy))

    @Convoys.CHARTER_PUT
    async def put(self, req: api.PutCharter) -> api.Charter:
        text = req.charter.text.replace("\r\n", "\n").strip()
        async with self.rt.db.transaction() as conn:
            await self.svc.access.manager(conn, req.actor, req.convoy_id)
            convoy = await repo.convoy_row(conn, req.convoy_id, lock=True)
            assert convoy is not None
            if not text:
                raise InvalidInput("`text`: the charter cannot be empty")
            changed = text != charter_text(convoy)
            if changed:
                convoy = await repo.set_charter(conn, req.convoy_id, text)
                await repo.audit(
                    conn,
                    convoy_id=req.convoy_id,
                    actor=req.actor,
                    action="charter.updated",
                    object_type="convoy",
                    object_id=req.convoy_id,
                    details={"version": str(convoy["charter_version"])},
                )
                await self.rt.emit(conn, ev.CharterUpdated(convoy_id=req.convoy_id, version=convoy["charter_version"]))
            result = charter_of(convoy, await self._accepted(conn, req.actor, convoy))
        if changed:
            # Binds before it is answered: services/milestones (which decides from its projection of
            # charters) holds the new version first. If it cannot be told, the caller hears 503: the
            # change is recorded and takes effect there with its event, moments later (as a removal).
            await self.rt.rpc.call(
                Milestones.CHARTER_SET, api.SetCharterVersion(convoy_id=req.convoy_id, version=result.version)
            )
        return result

    @Convoys.CHARTER_ACCEPT
    async def accept(self, req: api.AcceptCharter) -> api.Charter:
        async with self.rt.db.transaction() as conn:
            convoy = await self.svc.access.reader(conn, req.actor, req.convoy_id)
            membership = await self.svc.access.representative(
                conn, req.actor, req.convoy_id, "only the convoy's representatives accept its charter"
            )
            version = convoy["charter_version"]
            wanted = req.acceptance.version
            if wanted is not None and wanted != version:
                raise Conflict(f"the charter is at version {version} now, not {wanted}; read it again and accept")
            if membership["charter_version"] < version:
                await repo.accept_charter(conn, membership["id"], version)
                await repo.audit(
                    conn,
                    convoy_id=req.convoy_id,
                    actor=req.actor,
                    action="charter.accepted",
                    object_type="person",
                    object_id=req.actor.person_id,
                    details={"version": str(version)},
                )
                await self.rt.emit(
                    conn,
                    ev.CharterAccepted(
                        convoy_id=req.convoy_id,
                        company_id=membership["company_id"],
                        person_id=membership["person_id"],
                        version=version,
                    ),
                )
            return charter_of(convoy, True)
