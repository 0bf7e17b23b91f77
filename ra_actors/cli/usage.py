"""The error a ``ra-actors`` handler raises for bad arguments.

Its own module so that every command group can raise it without importing
:mod:`ra_actors.cli.program`, which imports the groups.  Rule: this module
imports nothing of ``ra_actors``.
"""
from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad arguments found after parsing (exit 2)."""
