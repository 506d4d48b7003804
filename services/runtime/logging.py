"""Structured logs: one JSON object per line, with the process's service name on every line.

Personal data stays out of the logs: :func:`mask_emails` masks every email address in every value
of every line (``anna.mueller@example.de`` becomes ``a***@example.de``), and every one-time link or token
(``cvl_…`` becomes ``cvl_***``), for our own log calls and
for libraries logging through the standard library alike, exception tracebacks included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from services.runtime.settings import Settings

EMAIL = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)

TOKEN = re.compile(r"\b(cv[a-z]_)[A-Za-z0-9_-]{8,}")
"""Convoy's secrets (sign-in links ``cvl_``, invitations ``cvi_``, sessions, tokens: services/convoys)."""


def mask(value: Any) -> Any:
    """``value`` with every email address and every Convoy token in it masked (strings, and inside dicts,
    lists, tuples): a token in a logged path or error (``/sign-in/cvl_…``) becomes ``cvl_***``."""
    if isinstance(value, str):
        if "_" in value:
            value = TOKEN.sub(r"\1***", value)
        return EMAIL.sub(r"\1***@\2", value) if "@" in value else value
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return type(value)(mask(v) for v in value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = str(value)  # anything else is rendered as text anyway (an exception, a UUID, an address object)
    return mask(text) if "@" in text or TOKEN.search(text) else value


def mask_emails(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask email addresses in every value of the event (keys are ours)."""
    for key, value in event_dict.items():
        event_dict[key] = mask(value)
    return event_dict


def configure(settings: Settings, service: str) -> None:
    level = getattr(logging, settings.log_level)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, mask_emails, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that log through the standard library go to the same stream, same shape.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, mask_emails, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))
    # APScheduler logs "running job" / "executed successfully" at INFO for every 5 s tick: noise
    # that hides what happened; its warnings (missed runs) and errors still come through.
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
