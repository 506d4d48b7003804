"""Request bodies with the examples the OpenAPI document shows (one place for all of them)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar.openapi.spec import Example
from litestar.params import BodyKwarg

from schemas import api


def _body(summary: str, value: dict[str, object]) -> BodyKwarg:
    return BodyKwarg(examples=[Example(summary=summary, value=value)])


NewConvoy = Annotated[
    api.NewConvoy,
    _body(
        "A weekly convoy, Mondays 09:00 Berlin time",
        {
            "name": "Online-Terminvergabe Nord",
            "theme": "Online-Terminvergabe",
            "description": "Handwerksbetriebe führen Online-Terminbuchung ein.",
            "cadence": {"frequency": "weekly", "weekday": "mon", "local_time": "09:00", "window_hours": 72},
            "timezone": "Europe/Berlin",
            "language": "de",
            "start_date": "2027-01-11",
            "end_date": "2027-06-28",
            "open_for_requests": True,
        },
    ),
]
ConvoyPatch = Annotated[
    api.ConvoyPatch,
    _body(
        "Move the check-in to Tuesday 08:30",
        {"cadence": {"frequency": "weekly", "weekday": "tue", "local_time": "08:30", "window_hours": 48}},
    ),
]
StatusChange = Annotated[api.StatusChange, _body("Start the convoy", {"status": "active", "reason": "Kick-off"})]
NewCompany = Annotated[
    api.NewCompany,
    _body(
        "A plumber from Hamburg",
        {"name": "Sanitär Müller", "sector": "Handwerk", "size_class": "10-49", "region": "HH"},
    ),
]
Removal = Annotated[api.Removal, _body("With a reason", {"reason": "Betrieb aufgegeben"})]
NewInvitation = Annotated[
    api.NewInvitation,
    _body("Invite a representative", {"email": "anna@mueller.example", "name": "Anna Müller", "language": "de"}),
]
NewObserverInvitation = Annotated[
    api.NewObserverInvitation,
    _body(
        "Invite the chamber's digital advisor as an observer",
        {"email": "jana.berg@ihk.example", "name": "Jana Berg", "language": "de", "note": "IHK, Digitalberatung"},
    ),
]
AcceptInvitation = Annotated[
    api.AcceptInvitation,
    _body(
        "Accept with a profile",
        {
            "token": "cvi_…",
            "name": "Anna Müller",
            "language": "de",
            "timezone": "Europe/Berlin",
            "charter_version": 1,
        },
    ),
]
TokenBody = Annotated[api.SignInComplete, _body("The token from the link", {"token": "cvl_…"})]
NewJoinRequest = Annotated[
    api.NewJoinRequest,
    _body(
        "A shop asks to join",
        {
            "company": {
                "name": "Laden Schmidt",
                "sector": "Einzelhandel",
                "size_class": "1-9",
                "region": "SH",
            },
            "contact_name": "Ben Schmidt",
            "contact_email": "ben@schmidt.example",
            "contact_language": "de",
            "message": "Wir bauen gerade unseren Webshop auf.",
        },
    ),
]
JoinDecision = Annotated[api.JoinDecision, _body("Approve", {"approve": True, "reason": ""})]
NewFacilitator = Annotated[
    api.NewFacilitator,
    _body(
        "Appoint a facilitator",
        {
            "name": "Frieda Berater",
            "email": "frieda@kompetenzzentrum.example",
            "language": "de",
            "timezone": "Europe/Berlin",
        },
    ),
]
SignInRequest = Annotated[api.SignInRequest, _body("Ask for a link", {"email": "anna@mueller.example"})]
ProfilePatch = Annotated[api.ProfilePatch, _body("Switch to English", {"language": "en"})]
NewApiToken = Annotated[api.NewApiToken, _body("A token for a script", {"name": "Reporting script"})]
NewReport = Annotated[
    api.NewReport,
    _body(
        "A weekly report",
        {
            "done": "Buchungsseite ist online",
            "next": "Kalender anbinden",
            "blockers": "",
            "help_wanted": "Erfahrung mit Kalender-APIs?",
            "mood": 4,
        },
    ),
]


class FacilitatorRef(api.Body, kw_only=True):
    person_id: uuid.UUID


CoFacilitator = Annotated[
    FacilitatorRef, _body("Add a co-facilitator", {"person_id": "00000000-0000-0000-0000-000000000001"})
]
ProjectIn = Annotated[
    api.ProjectIn,
    _body(
        "Start from the catalogue ladder",
        {"title": "Online-Termin-Service", "goal": "Kunden buchen Termine online.", "project_type": "online_booking"},
    ),
]
NewMilestone = Annotated[
    api.NewMilestone, _body("Add a milestone", {"title": "Kalender anbinden", "target_date": "2027-02-15", "weight": 2})
]
MilestonePatch = Annotated[api.MilestonePatch, _body("Mark it done", {"status": "done"})]
MilestoneOrder = Annotated[
    api.MilestoneOrder, _body("New order", {"milestone_ids": ["00000000-0000-0000-0000-000000000001"]})
]
ReportPatch = Annotated[api.ReportPatch, _body("Fix a typo", {"next": "Kalender anbinden und testen"})]
NewComment = Annotated[api.NewComment, _body("Encourage a peer", {"body": "Stark! Welches Tool nutzt ihr?"})]
NewHelpOffer = Annotated[
    api.NewHelpOffer, _body("Offer help", {"message": "Wir haben das letzten Monat gemacht, ruf gern an."})
]
NewReportFull = Annotated[
    api.NewReport,
    _body(
        "A weekly report with milestones and commitments",
        {
            "done": "Buchungsseite ist **online**",
            "next": "Kalender anbinden",
            "blockers": "",
            "help_wanted": True,
            "help_topic": "Kalender-Synchronisation",
            "mood": 4,
            "milestones": [{"milestone_id": "00000000-0000-0000-0000-000000000001", "status": "done"}],
            "commitments": ["Kalender anbinden", "Testlauf mit drei Stammkunden"],
            "commitment_reviews": [],
            "facilitator_note": "Personalengpass im Februar",
        },
    ),
]
ScheduleSettings = Annotated[
    api.ScheduleSettings,
    _body(
        "Bavarian holidays move the check-in",
        {"holiday_region": "BY", "holiday_policy": "move", "nudge_offsets_hours": [24, 2]},
    ),
]
CycleSkip = Annotated[api.CycleSkip, _body("Skip over Christmas", {"reason": "Weihnachtspause"})]
NewAway = Annotated[
    api.NewAway,
    _body("Away for the summer", {"from_date": "2027-07-01", "until_date": "2027-07-21", "reason": "Betriebsferien"}),
]
NewCompanySkip = Annotated[api.NewCompanySkip, _body("High season", {"cycle_index": 12, "reason": "Hochsaison"})]
SlackWebhook = Annotated[
    api.SlackWebhook,
    _body(
        "Post digests to a channel",
        {"webhook_url": "https://hooks.slack.com/services/T0000/B0000/abcdef123456", "post_reports": True},
    ),
]
TeamsWebhook = Annotated[
    api.ChatWebhook,
    _body(
        "Post digests and reports to a Teams channel",
        {
            "webhook_url": "https://prod-12.westeurope.logic.azure.com:443/workflows/0a1b2c3d/triggers/manual/paths/"
            "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=abcdef123456",
            "post_reports": True,
        },
    ),
]
NotificationPrefs = Annotated[
    api.NotificationPrefs,
    _body("No digest, no reminders", {"email": True, "digest": False, "immediate": {"nudge": False}}),
]

# --- moderation ------------------------------------------------------------------------------------
Hide = Annotated[
    api.Hide, _body("Hide with a reason (the author is told)", {"reason": "Werbung ist hier nicht erlaubt"})
]
ModerationNote = Annotated[
    api.ModerationNote,
    _body("With a note for the audit log (optional)", {"reason": "Nach Rücksprache wieder sichtbar"}),
]
CommentText = Annotated[
    api.CommentText, _body("Fix a typo in my comment", {"body": "Stark! Welches Buchungstool nutzt ihr?"})
]
CommentLock = Annotated[
    api.ModerationNote, _body("Lock a heated thread", {"reason": "Die Diskussion wird persönlich; bitte direkt klären"})
]

# --- data protection -------------------------------------------------------------------------------
EraseConfirm = Annotated[api.EraseConfirm, _body("Yes, delete my account and my personal data", {"confirm": "DELETE"})]

# --- flags and charter -------------------------------------------------------------------------------
NewFlag = Annotated[
    api.NewFlag,
    _body("Flag for the facilitators", {"reason": "confidential", "note": "Nennt Umsatzzahlen eines Kunden."}),
]
FlagResolution = Annotated[
    api.FlagResolution,
    _body("Act: hide it (the author is told why)", {"action": "act", "reason": "Vertrauliche Kundendaten"}),
]
CharterText = Annotated[
    api.CharterText,
    _body(
        "The convoy's own rules",
        {
            "text": "1. Was im Konvoi berichtet wird, bleibt im Konvoi.\n"
            "2. Wir bleiben freundlich und sachlich.\n3. Keine Werbung für eigene Produkte."
        },
    ),
]
CharterAcceptance = Annotated[api.CharterAcceptance, _body("Accept the version read", {"version": 2})]

# --- digitalisation check -----------------------------------------------------------------------------
CheckAnswers = Annotated[
    api.CheckAnswers,
    _body(
        "A plumber's answers to question set 1 (no contact data)",
        {
            "version": 1,
            "sector": "trades",
            "size_class": "10-49",
            "region": "HH",
            "answers": {
                "cc_website": "outdated",
                "cc_listings": "sometimes",
                "cc_channels": ["phone", "email"],
                "ao_booking": "phone",
                "ao_orders": "no",
                "ao_noshows": "weekly",
                "ip_invoices": "pdf",
                "ip_documents": "mixed",
                "ip_time": "hours",
                "sp_stock": "lists",
                "sp_reorder": "fixed",
                "sp_search": "weekly",
                "lr_trips": "daily",
                "lr_planning": "board",
                "lr_proof": "paper",
                "it_backup": "manual",
                "it_updates": "partly",
                "it_privacy": "basics",
                "ps_owner": "boss",
                "ps_confidence": "3",
                "ps_learning": "self",
            },
        },
    ),
]
NewPoolRequest = Annotated[
    api.NewPoolRequest,
    _body(
        "Ask to join a convoy on online booking, with consent",
        {
            "theme": "online_booking",
            "company": {
                "name": "Sanitär Müller",
                "sector": "Sanitär und Heizung",
                "size_class": "10-49",
                "region": "HH",
            },
            "contact_name": "Anna Müller",
            "contact_email": "anna@mueller.example",
            "contact_language": "de",
            "message": "Wir möchten Termine online vergeben.",
            "consent": True,
        },
    ),
]
Formation = Annotated[
    api.Formation,
    _body(
        "Form a convoy from four waiting companies",
        {
            "request_ids": [
                "6f1c2a9e-8d1b-4d0e-9a43-0c3e51d4a001",
                "6f1c2a9e-8d1b-4d0e-9a43-0c3e51d4a002",
                "6f1c2a9e-8d1b-4d0e-9a43-0c3e51d4a003",
                "6f1c2a9e-8d1b-4d0e-9a43-0c3e51d4a004",
            ],
            "convoy": {
                "name": "Online-Terminbuchung Nord",
                "theme": "Online-Terminbuchung",
                "start_date": "2027-02-01",
            },
            "allow_competitors": False,
        },
    ),
]
