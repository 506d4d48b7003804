"""One registry of every process Convoy runs (no registration by import side effect)."""

from __future__ import annotations

import importlib

from services.runtime.service import ServiceModule

BACKEND_MODULES: dict[str, str] = {
    "convoys": "services.convoys",
    "milestones": "services.milestones",
    "reminders": "services.reminders",
    "notifier": "notifier",
}
"""Back-end services: name -> module providing NAME, MIGRATIONS and setup(rt)."""

PROCESSES: tuple[str, ...] = ("api", *BACKEND_MODULES)
"""Every service process the supervisor starts."""


def backend(name: str) -> ServiceModule:
    module: ServiceModule = importlib.import_module(BACKEND_MODULES[name])
    return module
