"""A service's refusal in the person's language.

The services explain a refusal in English (``ConvoyError.message``: the API's ``detail``), written for
developers and API clients. A page never shows that text to a German reader: each known message maps
to a catalogue sentence here (exact text, or a pattern for the messages that carry a name or number);
an unknown one is left out and the page says only what the status means (``core.service_error``).
"""

from __future__ import annotations

import re
from collections.abc import Callable


def N_(message: str) -> str:
    """Marks a string for the catalogue; it is translated where it is shown."""
    return message


EXACT: dict[str, str] = {
    # --- not found (or not yours: a convoy you have no part in does not exist for you)
    "no such convoy": N_("This convoy does not exist, or you are not part of it."),
    "no such open convoy": N_("This convoy does not exist or takes no requests to join."),
    "no such report": N_("This report does not exist, or you may not read it."),
    "no such comment": N_("This comment does not exist any more."),
    "no such company in this convoy": N_("This company is not in the convoy."),
    "no such member in this convoy": N_("This person is not a member of the convoy."),
    "no such observer in this convoy": N_("This person does not observe the convoy."),
    "no such invitation": N_("This invitation does not exist."),
    "no such join request in this convoy": N_("This request to join does not exist."),
    "no such milestone": N_("This milestone does not exist."),
    "no such flag": N_("This flag does not exist any more."),
    "no such thing to flag": N_("There is nothing like this to flag."),
    "no such check result": N_("This check result does not exist."),
    "no such pool request": N_("This request is no longer in the pool."),
    "no such person": N_("This person does not exist."),
    "no such action": N_("This action does not exist."),
    "no such convoy in this period": N_("This convoy has no figures for this period."),
    "this company has no project yet": N_("This company has not described its project yet."),
    "you do not report for a company in this convoy": N_("You do not report for a company in this convoy."),
    "this link is not valid": N_("This link is not valid."),
    # --- not allowed
    "only the convoy's facilitators may do this": N_("Only the convoy's facilitators may do this."),
    "only the convoy's facilitators moderate its content": N_("Only the convoy's facilitators moderate its content."),
    "only the convoy's facilitators may change its schedule": N_(
        "Only the convoy's facilitators may change its schedule."
    ),
    "only facilitators and the centre's admins may do this": N_(
        "Only facilitators and the centre's admins may do this."
    ),
    "only facilitators create convoys": N_("Only facilitators create convoys."),
    "only facilitators have an overview": N_("Only facilitators have an overview."),
    "only facilitators see the formation pool and the programme report": N_(
        "Only facilitators see the formation pool and the programme report."
    ),
    "only the centre's admins appoint facilitators": N_("Only the centre's admins appoint facilitators."),
    "only the convoy's representatives accept its charter": N_("Only the convoy's representatives accept its charter."),
    "only the convoy's facilitators and representatives invite observers": N_(
        "Only the convoy's facilitators and representatives invite observers."
    ),
    "only the company's representatives skip a cycle for it": N_(
        "Only the company's representatives skip a round for it."
    ),
    "a representative invites a second reader for their own company only": N_(
        "A representative invites a second reader for their own company only."
    ),
    "facilitators do not post reports; a company's representatives do": N_(
        "Facilitators do not post reports; a company's representatives do."
    ),
    "observers read along; they do not report": N_("Observers read along; they do not report."),
    "help is offered by the convoy's representatives": N_("Help is offered by the convoy's representatives."),
    "offer help to other companies; this is your own report": N_(
        "Offer help to other companies; this is your own report."
    ),
    "kudos are for peers, not for your own company": N_("Kudos are for peers, not for your own company."),
    "kudos come from the convoy's representatives": N_("Kudos come from the convoy's representatives."),
    "the form is out of date (CSRF token); reload the page and try again": N_(
        "The form is out of date. Please reload the page and try again."
    ),
    "missing or wrong X-CSRF-Token header": N_("The form is out of date. Please reload the page and try again."),
    "forms are only accepted from Convoy's own pages": N_("Forms are only accepted from Convoy's own pages."),
    # --- not possible right now
    "the convoy is completed and read-only": N_("The convoy is completed; nothing can be changed any more."),
    "the convoy is not active": N_("The convoy is not active."),
    "the convoy's facilitators have locked the comments on this report": N_(
        "The convoy's facilitators have locked the comments on this report."
    ),
    "the convoy's first check-in has not come yet; open the first round first": N_(
        "The convoy's first check-in has not come yet; open the first round first."
    ),
    "this cycle has already opened; it can no longer be skipped": N_(
        "This round has already opened; it can no longer be skipped."
    ),
    "this flag was already resolved": N_("This flag was already resolved."),
    "this report asks for no help": N_("This report asks for no help."),
    "you already observe this convoy": N_("You already observe this convoy."),
    "you already offered help on this report": N_("You already offered help on this report."),
    "you are already a member of this convoy": N_("You are already a member of this convoy."),
    "your company already reported in this cycle; edit that report instead": N_(
        "Your company already reported in this round; edit that report instead."
    ),
    "describe the project first (PUT …/project)": N_("Describe the project first."),
    "this report's round has closed and its digest has gone out, so it can no longer be edited; add a comment to it"
    " instead": N_(
        "This report's round has closed and its digest has gone out, so it can no longer be edited;"
        " add a comment to it instead."
    ),
    # --- links and invitations
    "this convoy has completed": N_("This convoy has completed."),
    "this invitation has already been used; sign in instead": N_(
        "This invitation has already been used; please sign in instead."
    ),
    "this invitation has expired; ask the facilitator for a new one": N_(
        "This invitation has expired; ask the facilitator for a new one."
    ),
    "this invitation was withdrawn": N_("This invitation was withdrawn."),
    "this sign-in link is invalid, expired or already used; ask for a new one": N_(
        "Please ask for a new sign-in link."
    ),
    # --- too many
    "too many join requests from this address today": N_("Too many requests to join from this address today."),
    "too many requests from this address today": N_("Too many requests from this address today."),
    "too many requests from your address; try again in a minute": N_("Too many requests; try again in a minute."),
    "too many sign-in links for this address; try again in an hour": N_(
        "Too many sign-in links for this address; try again in an hour."
    ),
    # --- input the forms cannot catch themselves
    "`end_date`: the convoy cannot end before it starts": N_("The convoy cannot end before it starts."),
    "`until_date`: before `from_date`": N_("The last day comes before the first."),
    "`to_date`: the period cannot end before it starts": N_("The period cannot end before it starts."),
    "`to_date`: at most three years at a time": N_("At most three years at a time."),
    "`reason`: say why (1 to 500 characters); the author is told": N_(
        "Please give a reason (up to 500 characters); the author is told."
    ),
    "`reason`: say why the request is declined; the company reads it": N_(
        "Please say why the request is declined; the company reads it."
    ),
    "`note`: say what is wrong (required with reason `other`)": N_("Please say in a few words what is wrong."),
    "`parent_id`: answers go one level deep; answer the first comment": N_(
        "Answers go one level deep; answer the first comment."
    ),
    "`parent_id`: not a comment on this report": N_("This is not a comment on this report."),
    "`text`: the charter cannot be empty": N_("The charter cannot be empty."),
    "`consent`: please agree that we store your contact to form a convoy": N_(
        "Please agree that we store your contact to form a convoy."
    ),
    "`milestones`: each milestone at most once": N_("Each milestone at most once, please."),
    "`help_milestone_id`: not a milestone of your company's project": N_(
        "This is not a milestone of your company's project."
    ),
    "`company_id`: you represent several companies here; say which": N_(
        "You represent several companies here; please choose one."
    ),
}

PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"a company named ['\"](?P<name>.+)['\"] is already in this convoy"),
        N_("A company named %(name)s is already in this convoy."),
    ),
    (
        re.compile(r"a (?P<old>\w+) convoy cannot become (?P<new>\w+) \(possible: .*\)"),
        N_("The convoy cannot go from “%(old)s” to “%(new)s”."),
    ),
    (re.compile(r"the convoy is already (?P<state>\w+)"), N_("The convoy is already “%(state)s”.")),
    (
        re.compile(r"likely competitors in one convoy: .*"),
        N_("Likely competitors would meet in one convoy; confirm to form it anyway."),
    ),
    (re.compile(r"no longer waiting in the pool: (?P<names>.+)"), N_("No longer waiting in the pool: %(names)s.")),
    (
        re.compile(r"the charter is at version (?P<version>\d+) now, not \d+; read it again and accept"),
        N_("The charter changed (version %(version)s); please read it again and accept it."),
    ),
    (
        re.compile(r"accept the convoy's updated charter first.*"),
        N_("Please accept the convoy's updated charter first."),
    ),
    (re.compile(r"this request was already (approved|declined)"), N_("This request was already decided.")),
    (re.compile(r"(?P<email>\S+) is already a facilitator"), N_("%(email)s is already a facilitator.")),
    (
        re.compile(r"(?P<email>\S+) is already a member of this convoy"),
        N_("%(email)s is already a member of this convoy."),
    ),
    (
        re.compile(r"(?P<email>\S+) already observes this convoy .*"),
        N_("%(email)s already observes this convoy; end the observer seat first."),
    ),
    (
        re.compile(r"(?P<email>\S+) has had (?P<n>\d+) invitations today"),
        N_("%(email)s has had %(n)s invitations today; please try again tomorrow."),
    ),
    (re.compile(r"observers read along; they do not .+"), N_("Observers read along; they do not write.")),
    (re.compile(r"only the company's representatives .+"), N_("Only the company's representatives may do this.")),
    (
        re.compile(r"`[\w.]+`: unknown time zone ['\"](?P<name>.*)['\"] .*"),
        N_("Unknown time zone %(name)s; use a name such as Europe/Berlin."),
    ),
    (
        re.compile(r"`webhook_url`: must be .*"),
        N_("This webhook address is not accepted; paste the https address the chat service shows."),
    ),
    (re.compile(r"`cadence\.window_hours`: .*"), N_("The check-in window is longer than the rhythm allows.")),
    (re.compile(r"`project_type`: unknown type .*"), N_("This type of project is unknown.")),
    (re.compile(r"a project has at most (?P<n>\d+) milestones"), N_("A project has at most %(n)s milestones.")),
    (re.compile(r"`cycle_index`: this convoy has no cycle \d+"), N_("This convoy has no such round.")),
    (
        re.compile(r"`milestones\[\d+\]\.milestone_id`: not a milestone of your company's project"),
        N_("This is not a milestone of your company's project."),
    ),
    (re.compile(r"`theme`: choose one of .*"), N_("Please choose one of the themes.")),
]
STATES = {"forming": N_("forming"), "active": N_("active"), "paused": N_("paused"), "completed": N_("completed")}


def explain(gettext: Callable[[str], str], message: str) -> str | None:
    """The service's ``message`` as a sentence in the reader's language, or None when it is not known."""
    message = message.strip()
    if message in EXACT:
        return gettext(EXACT[message])
    for pattern, text in PATTERNS:
        found = pattern.fullmatch(message)
        if found:
            values = {k: gettext(STATES[v]) if v in STATES else v for k, v in found.groupdict().items()}
            return gettext(text) % values if values else gettext(text)
    return None
