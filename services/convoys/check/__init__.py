"""The digitalisation check (public), the formation pool and programme figures, in services/convoys.

- ``questions.py``: the versioned question set (``questions-v<N>.json``, data, validated on load) and the
  scoring, a pure function of a question set and answers (golden files per version in tests/golden/).
- ``formation.py``: suggested groups of 4 to 8 per theme and maturity; the competitor warning.
- ``service.py``: the request/reply endpoints; ``repository.py``: their SQL.
"""
