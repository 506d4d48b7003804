"""Posting to a convoy's chat channels, each post exactly once (the notifier's delivery log).

The notifier's handlers call ``announce_report`` and ``announce_digest``; this iterates over the
convoy's configured channels (the list carried by services/convoys' recipients answer,
notifier/recipients.py) and does for each what every channel shares: claim the key
``{channel}:report:{report}`` / ``{channel}:digest:{convoy}:{cycle}`` before the post, record it after;
a transient failure is noted and raised (the event is retried, and only what was not posted is posted);
a webhook refused for good is removed (only if it is still the one that failed) and the convoy's
facilitators are told by email.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from notifier import i18n, recipients, render
from notifier.chat import (
    CHANNELS,
    ChatChannel,
    DigestPost,
    RefusedMessage,
    ReportPost,
    RevokedWebhook,
    WebhookPoster,
)
from notifier.cycles import absence
from notifier.delivery import MESSAGES_LIST_ID, SENT, Mailer, batched
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.convoys import Convoys
from services.runtime import tracing
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)


class ChatDelivery:
    def __init__(self, rt: Runtime, mail: Mailer, *, channels: dict[str, ChatChannel] | None = None) -> None:
        self.rt = rt
        self.mail = mail
        """Its delivery log records the posts; a disabled channel is told to the facilitators by email."""
        self.channels = CHANNELS if channels is None else channels
        self.poster = WebhookPoster(rt.settings.smtp_timeout)

    async def close(self) -> None:
        await self.poster.close()

    async def targets(self, convoy_id: uuid.UUID, carried: list[api.ChatTarget] | None = None) -> list[api.ChatTarget]:
        """The convoy's chat channels: as the recipients answer carried them, else asked."""
        if carried is None:  # as the recipients answer carries them (reused while unchanged: notifier/recipients.py)
            carried = (await recipients.of(self.rt).get(convoy_id)).chats
        known = [t for t in carried if t.channel in self.channels]
        for t in carried:
            if t.channel not in self.channels:
                log.warning("chat channel unknown to this notifier: skipped", channel=t.channel)
        return known

    async def announce_report(
        self,
        envelope: env.Envelope,
        convoy_id: uuid.UUID,
        report: ev.ReportSnapshot,
        members: api.Recipients,
        report_link: str,
        convoy_link: str,
    ) -> None:
        """The new report to every channel of the convoy that asked for reports."""
        targets = [t for t in await self.targets(convoy_id, members.chats) if t.post_reports]
        if not targets:
            return
        post = ReportPost(report=report, convoy_name=members.convoy_name, language=members.language, link=report_link)
        await self._post_all(
            envelope,
            convoy_id,
            members.convoy_name,
            convoy_link,
            [(t, f"{t.channel}:report:{report.id}", self.channels[t.channel].report(post)) for t in targets],
        )

    async def announce_digest(
        self,
        envelope: env.Envelope,
        event: ev.CycleClosed,
        digest: api.Digest,
        convoy: api.Convoy,
        companies: dict[uuid.UUID, str],
        link: str,
    ) -> None:
        """The round's digest to every channel of the convoy, once per channel and cycle."""
        targets = await self.targets(event.convoy_id)
        if not targets:
            return
        absent = {a.company_id: absence(i18n.Words(convoy.language), a) for a in event.absences}
        post = DigestPost(digest=digest, language=convoy.language, company_names=companies, absences=absent, link=link)
        await self._post_all(
            envelope,
            event.convoy_id,
            convoy.name,
            link,
            [
                (t, f"{t.channel}:digest:{event.convoy_id}:{event.cycle_index}", self.channels[t.channel].digest(post))
                for t in targets
            ],
        )

    async def _post_all(
        self,
        envelope: env.Envelope,
        convoy_id: uuid.UUID,
        convoy_name: str,
        link: str,
        posts: list[tuple[api.ChatTarget, str, dict[str, Any]]],
    ) -> None:
        """Each post in turn (one channel failing does not keep the others from theirs); then the first
        failure is raised, and the retried event posts only what is not in the log yet."""
        failures: list[Exception] = []
        for target, key, payload in posts:
            try:
                await self._post(envelope, target, key, payload, convoy_id, convoy_name, link)
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    async def _post(
        self,
        envelope: env.Envelope,
        target: api.ChatTarget,
        key: str,
        payload: dict[str, Any],
        convoy_id: uuid.UUID,
        convoy_name: str,
        link: str,
    ) -> None:
        channel = self.channels[target.channel]
        if not await self.mail.log.claim(key, envelope.id, channel.name, str(convoy_id)):  # shares commits
            SENT.labels(channel.name, "duplicate").inc()
            return
        try:
            with tracing.span(
                f"{channel.name} post", kind=tracing.SpanKind.CLIENT, attributes={"convoy.delivery_key": key}
            ):
                await self.poster.post(channel, target.webhook_url, payload)
        except RevokedWebhook as exc:
            await self.mail.deliveries.finish(key, "failed", str(exc))
            SENT.labels(channel.name, "refused").inc()
            log.warning("chat webhook refused for good; removing it", channel=channel.name, convoy_id=str(convoy_id))
            await self.rt.rpc.call(
                Convoys.CONVOY_CHAT_SET,
                api.SetChat(
                    actor=api.SYSTEM,
                    convoy_id=convoy_id,
                    channel=channel.name,  # type: ignore[arg-type]  # a name services/convoys knows
                    hook=api.ChatWebhook(webhook_url=None),
                    only_if_url=target.webhook_url,
                ),
            )
            await self._tell_facilitators(envelope, channel, convoy_id, convoy_name, str(exc), link)
            return
        except RefusedMessage as exc:
            await self.mail.deliveries.finish(key, "failed", str(exc))
            SENT.labels(channel.name, "refused").inc()
            log.warning("chat message refused for good", channel=channel.name, key=key, error=str(exc))
            return
        except Exception as exc:
            await self.mail.deliveries.note_error(key, repr(exc))
            SENT.labels(channel.name, "retry").inc()
            raise
        self.mail.log.sent(key, envelope.id, channel.name, str(convoy_id))
        if not batched.get():  # in a fan-out, its flush records it (before the event is acknowledged)
            await self.mail.log.flush()  # recorded before the event is acknowledged
        SENT.labels(channel.name, "sent").inc()

    async def _tell_facilitators(
        self,
        envelope: env.Envelope,
        channel: ChatChannel,
        convoy_id: uuid.UUID,
        convoy_name: str,
        reason: str,
        link: str,
    ) -> None:
        found = await self.rt.rpc.call(Convoys.CONVOY_FACILITATORS, api.GetRecipients(convoy_id=convoy_id))
        for f in found.facilitators:
            rendered = render.message(
                channel.notice,
                f.language,
                {"convoy": convoy_name, "link": link, "reason": reason[:300], "channel": channel.label},
                name=f.name,
            )
            await self.mail.send_email(
                f"message:{channel.name}_disabled:{envelope.id}:{f.person_id}",
                envelope.id,
                to_name=f.name,
                to_email=f.email,
                rendered=rendered,
                list_id=MESSAGES_LIST_ID,  # the notifier's messages about their account
            )
