"""Slack: the convoy's channel gets a compact digest (Block Kit) through its incoming webhook.

Posted by ``notifier.chat.WebhookPoster`` (one message per second per webhook, 429 Retry-After
honoured). A permanent refusal (revoked webhook, removed channel: 403/404/410 or one of Slack's
error bodies) drops the webhook.
"""

from __future__ import annotations

from typing import Any

from notifier import i18n
from notifier.chat import DigestPost, ReportPost, Verdict
from schemas import api
from schemas import events as ev

PERMANENT_BODIES = frozenset(
    {
        "invalid_token",
        "channel_not_found",
        "channel_is_archived",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "action_prohibited",
        "posting_to_general_channel_denied",
    }
)


def escape(text: str) -> str:
    """Slack mrkdwn control characters (user text must not become mentions or links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel:
    name = "slack"
    label = "Slack"
    notice = "slack_disabled"

    def digest(self, post: DigestPost) -> dict[str, Any]:
        text, blocks = digest_message(post.digest, post.language, post.company_names, post.absences, post.link)
        return {"text": text, "blocks": blocks}

    def report(self, post: ReportPost) -> dict[str, Any]:
        text, blocks = report_message(post.report, post.convoy_name, post.language, post.link)
        return {"text": text, "blocks": blocks}

    def verdict(self, status: int, body: str) -> Verdict:
        if status == 200:
            return Verdict.SENT
        if status == 429:
            return Verdict.RATE_LIMITED
        if status in (403, 404, 410) or body in PERMANENT_BODIES:
            return Verdict.REVOKED
        return Verdict.TRANSIENT


def _bar(progress: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, progress)) * width)
    return "▓" * filled + "░" * (width - filled) + f" {round(progress * 100)}%"


def _cut(text: str, limit: int = 180) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def digest_message(
    digest: api.Digest, language: str, company_names: dict[Any, str], absences: dict[Any, str], link: str
) -> tuple[str, list[dict[str, Any]]]:
    """The compact digest for the convoy's channel: (fallback text, Block Kit blocks)."""
    _ = i18n.Words(language)
    title = _(
        'Convoy digest "%(convoy)s" \N{EN DASH} round %(round)s',
        convoy=digest.convoy_name,
        round=digest.cycle_index + 1,
    )
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    lines: list[str] = []
    if digest.completed_milestones:
        lines.append(
            _("*Reached:*")
            + " "
            + "; ".join(f"{escape(m.company_name)}: {escape(m.title)}" for m in digest.completed_milestones)
        )
    if digest.help_requests:
        lines.append(
            _("*Asks for help:*")
            + " "
            + "; ".join(f"{escape(r.company_name)} ({escape(_cut(r.help_topic, 80))})" for r in digest.help_requests)
        )
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}})
    for r in digest.reports[:20]:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": (f"*{escape(r.company_name)}* {_bar(r.progress)}\n{escape(_cut(r.done))}")[:2900],
                },
            }
        )
    silent = [
        company_names.get(c, "?") + (f" ({absences[c]})" if c in absences else "") for c in digest.silent_company_ids
    ]
    footer = _(
        "Participation %(participation)s%% · progress %(progress)s%%",
        participation=round(digest.participation * 100),
        progress=round(digest.progress * 100),
    )
    if silent:
        footer += " · " + _("no report: %(companies)s", companies=", ".join(escape(s) for s in silent))
    footer += " · <" + link + "|" + _("Open the convoy") + ">"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer[:2900]}]})
    return title, blocks


def report_message(
    report: ev.ReportSnapshot, convoy_name: str, language: str, link: str
) -> tuple[str, list[dict[str, Any]]]:
    """One new report for the convoy's channel (peer view: never the facilitator note)."""
    _ = i18n.Words(language)
    title = _("%(company)s: new report", company=report.company_name)
    lines = [f"*{escape(report.company_name)}* · {escape(convoy_name)}", escape(_cut(report.done, 400))]
    if report.next:
        lines.append(_("*Next:*") + " " + escape(_cut(report.next)))
    if report.help_wanted:
        lines.append(_("*Asks for help:*") + " " + escape(_cut(report.help_topic or "-", 120)))
    open_report = _("Open")  # a link beside the report's text: "Zum Bericht" in German
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|{open_report}>"}]},
    ]
    return title, blocks
