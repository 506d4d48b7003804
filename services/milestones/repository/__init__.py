"""All SQL of services/milestones, one module per section; handlers name the section
(``repo.reports.report_rows``, ``repo.flags.insert_flag``). Every list is answered by a fixed
number of set-based queries.
"""

from services.milestones.repository import (
    comments,
    digests,
    flags,
    imports,
    moderation,
    outcomes,
    privacy,
    projections,
    projects,
    reports,
    versions,
)

__all__ = [
    "comments",
    "digests",
    "flags",
    "imports",
    "moderation",
    "outcomes",
    "privacy",
    "projections",
    "projects",
    "reports",
    "versions",
]
