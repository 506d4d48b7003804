"""The notifier's operations: a person's notification preferences, and one-click unsubscribe.

(The personal-data export is ``PrivacyRules.personal_data`` in notifier/privacy.py.)
"""

from __future__ import annotations

import msgspec

from notifier import access
from notifier.privacy import PrivacyRules
from notifier.repository import Preferences
from schemas import api
from schemas.notifier import Notifier
from services.runtime.service import Runtime


class NotifierService:
    def __init__(self, rt: Runtime, preferences: Preferences, privacy: PrivacyRules) -> None:
        self.rt = rt
        self.preferences = preferences
        self.privacy = privacy

    @Notifier.PREFS_GET
    async def prefs_get(self, req: api.PrefsAsk) -> api.NotificationPrefs:
        return await self.preferences.get(access.own_person(req.actor, "preferences"))

    @Notifier.PREFS_PUT
    async def prefs_put(self, req: api.PutPrefs) -> api.NotificationPrefs:
        await self.preferences.put(access.own_person(req.actor, "preferences"), req.prefs)
        return req.prefs

    @Notifier.UNSUBSCRIBE
    async def unsubscribe(self, req: api.UnsubscribeAsk) -> api.Unsubscribed:
        """One click, no sign-in: honoured at once (links stay valid for a year)."""
        person_id, kind = access.unsubscribe_claim(self.rt.settings, req.token)
        if await self.privacy.is_erased(person_id):  # an old link of a deleted account: nothing to keep
            return api.Unsubscribed(kind=kind)
        prefs = await self.preferences.get(person_id)
        if kind == "digest":
            prefs = msgspec.structs.replace(prefs, digest=False)
        else:
            prefs = msgspec.structs.replace(prefs, immediate={**prefs.immediate, kind: False})
        await self.preferences.put(person_id, prefs)
        return api.Unsubscribed(kind=kind)
