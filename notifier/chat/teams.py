"""Microsoft Teams: the digest and new reports as Adaptive Cards, posted to a Teams Workflows webhook.

The body is the message envelope the Workflows template "Post to a channel when a webhook request is
received" reads (``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": card}]}``); the card is schema version 1.5, the
highest Teams renders. Workflows answers ``202 Accepted`` once the flow has taken the request.

User text (convoy and company names, report text, milestone titles) goes only into ``TextRun``s of a
``RichTextBlock``: a TextRun is shown as written, without Markdown, so ``**bold**``,
``[a link](https://…)`` or a heading typed into a report stay plain characters. Card text of our own
(labels, the progress bar) is in ``TextBlock``s, which Teams renders with its Markdown subset.
"""

from __future__ import annotations

from typing import Any

from notifier import i18n
from notifier.chat import DigestPost, ReportPost, Verdict

CARD_VERSION = "1.5"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_REPORTS = 20
"""Reports listed in one digest card (the rest are a link away; Teams refuses messages over ~28 KB)."""


def _cut(text: str, limit: int = 180) -> str:
    """One line (whitespace and control characters folded), at most ``limit`` characters."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _bar(progress: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, progress)) * width)
    return "▓" * filled + "░" * (width - filled) + f" {round(progress * 100)} %"


def run(text: str, **style: Any) -> dict[str, Any]:
    """A TextRun: ``text`` shown as written (no Markdown)."""
    return {"type": "TextRun", "text": text, **style}


def plain(*inlines: dict[str, Any], **props: Any) -> dict[str, Any]:
    """A RichTextBlock of TextRuns: the only place user text goes."""
    return {"type": "RichTextBlock", "inlines": list(inlines), **props}


def label(text: str, **props: Any) -> dict[str, Any]:
    """A TextBlock of our own words (Markdown-capable: never user text)."""
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def card(body: list[dict[str, Any]], *, language: str, fallback: str, link: str, link_title: str) -> dict[str, Any]:
    return {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "lang": language,
        "fallbackText": fallback,
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": link_title, "url": link}],
    }


def envelope(content: dict[str, Any]) -> dict[str, Any]:
    """The message a Teams Workflows webhook posts to its channel."""
    return {"type": "message", "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None, "content": content}]}


def digest_card(post: DigestPost) -> dict[str, Any]:
    d, _ = post.digest, i18n.Words(post.language)
    round_no = d.cycle_index + 1
    body: list[dict[str, Any]] = [
        plain(
            run(
                _(
                    'Convoy digest "%(convoy)s" \N{EN DASH} round %(round)s',
                    convoy=_cut(d.convoy_name, 120),
                    round=round_no,
                ),
                size="Large",
                weight="Bolder",
            ),
        ),
        label(
            _(
                "Participation %(participation)s %% · progress %(progress)s %%",
                participation=round(d.participation * 100),
                progress=round(d.progress * 100),
            ),
            isSubtle=True,
            spacing="None",
        ),
    ]
    if d.completed_milestones:
        body.append(label(_("Reached"), weight="Bolder", color="Good"))
        body += [
            plain(run(_cut(m.company_name, 80), weight="Bolder"), run(": " + _cut(m.title, 160)), spacing="None")
            for m in d.completed_milestones[:MAX_REPORTS]
        ]
    if d.help_requests:
        body.append(label(_("Asks for help"), weight="Bolder", color="Attention"))
        body += [
            plain(run(_cut(r.company_name, 80), weight="Bolder"), run(": " + _cut(r.help_topic, 160)), spacing="None")
            for r in d.help_requests[:MAX_REPORTS]
        ]
    for r in d.reports[:MAX_REPORTS]:
        body.append(
            {
                "type": "Container",
                "separator": True,
                "spacing": "Medium",
                "items": [
                    {
                        "type": "ColumnSet",
                        "columns": [
                            {
                                "type": "Column",
                                "width": "stretch",
                                "items": [plain(run(_cut(r.company_name, 80), weight="Bolder"))],
                            },
                            {
                                "type": "Column",
                                "width": "auto",
                                "items": [label(_bar(r.progress), fontType="Monospace", isSubtle=True)],
                            },
                        ],
                    },
                    plain(run(_cut(r.done, 280)), spacing="Small"),
                ],
            }
        )
    if len(d.reports) > MAX_REPORTS:
        more = len(d.reports) - MAX_REPORTS
        body.append(label(_.ngettext("… and %(num)s more report", "… and %(num)s more reports", more), isSubtle=True))
    silent = [
        _cut(post.company_names.get(c, "?"), 80) + (f" ({_cut(post.absences[c], 80)})" if c in post.absences else "")
        for c in d.silent_company_ids
    ]
    if silent:
        body.append(label(_("No report"), weight="Bolder", separator=True))
        body.append(plain(run(", ".join(silent)), spacing="None"))
    return card(
        body,
        language=post.language,
        fallback=_("Convoy digest, round %(round)s", round=round_no),
        link=post.link,
        link_title=_("Open the convoy"),
    )


def report_card(post: ReportPost) -> dict[str, Any]:
    r, _ = post.report, i18n.Words(post.language)
    body: list[dict[str, Any]] = [
        plain(
            run(_cut(r.company_name, 80), size="Medium", weight="Bolder"),
            run(_(": new report"), size="Medium", weight="Bolder"),
        ),
        plain(run(_cut(post.convoy_name, 120), isSubtle=True), spacing="None"),
        plain(run(_cut(r.done, 400))),
    ]
    if r.next:
        body.append(label(_("Next"), weight="Bolder"))
        body.append(plain(run(_cut(r.next)), spacing="None"))
    if r.help_wanted:
        body.append(label(_("Asks for help"), weight="Bolder", color="Attention"))
        body.append(plain(run(_cut(r.help_topic or "-", 120)), spacing="None"))
    return card(
        body,
        language=post.language,
        fallback=_("New report in the convoy"),
        link=post.link,
        link_title=_("Open the report"),
    )


class TeamsChannel:
    name = "teams"
    label = "Microsoft Teams"
    notice = "chat_disabled"

    def digest(self, post: DigestPost) -> dict[str, Any]:
        return envelope(digest_card(post))

    def report(self, post: ReportPost) -> dict[str, Any]:
        return envelope(report_card(post))

    def verdict(self, status: int, body: str) -> Verdict:
        """Workflows answers 202 (accepted; the flow runs after). 401/403/404/410: the flow was deleted,
        its URL regenerated or its signature refused: drop the webhook. 400/413: this message is refused
        (the flow stays). Anything else: later again."""
        if 200 <= status < 300:
            return Verdict.SENT
        if status == 429:
            return Verdict.RATE_LIMITED
        if status in (401, 403, 404, 410):
            return Verdict.REVOKED
        if status in (400, 413):
            return Verdict.REFUSED
        return Verdict.TRANSIENT
