"""Convoy's back-end services, their shared runtime, and the `convoy` command."""
