"""Who may do what in the notifier (one mechanism: the actor, or a signed link).

- Preferences and the personal-data export: a signed-in person, their own only (the admin token
  has none: 403).
- Unsubscribe: no sign-in; whoever holds the signed link of an email (``/unsubscribe/{token}``,
  naming the person and the kind, valid for a year) turns that kind off for that person.
"""

from __future__ import annotations

import uuid

from schemas import api
from services.runtime import signing
from services.runtime.errors import Forbidden
from services.runtime.settings import Settings

UNSUBSCRIBE_PURPOSE = "unsubscribe"
UNSUBSCRIBE_MAX_AGE_S = 366 * 24 * 3600
"""Unsubscribe links stay valid for a year (and a day)."""


def own_person(actor: api.Actor, what: str) -> uuid.UUID:
    """The person asking for their own ``what``; the admin token has none (403)."""
    if actor.person_id is None:
        raise Forbidden(f"the admin token has no {what}; sign in as a person")
    return actor.person_id


def unsubscribe_token(settings: Settings, person_id: uuid.UUID, kind: str) -> str:
    """The token of a one-click unsubscribe link: turns ``kind`` off for ``person_id``."""
    return signing.sign(settings, UNSUBSCRIBE_PURPOSE, {"p": str(person_id), "k": kind})


def unsubscribe_claim(settings: Settings, token: str) -> tuple[uuid.UUID, str]:
    """Whom and which kind an unsubscribe link names (404 if forged, 410 if older than a year)."""
    payload = signing.verify(settings, UNSUBSCRIBE_PURPOSE, token, max_age_s=UNSUBSCRIBE_MAX_AGE_S)
    return uuid.UUID(payload["p"]), str(payload["k"])
