"""User-facing errors: raised for bad input or settings, printed by the CLI without a traceback."""

from __future__ import annotations


class WeftError(Exception):
    """An error the user can fix; the message says what to change."""
