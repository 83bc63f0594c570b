"""Exporting a trained language model to run elsewhere: ``export_web`` writes a static web page.

See :mod:`weft.export.web` and docs/web-export.md.
"""

from __future__ import annotations

from weft.export.web import WEIGHT_FORMATS, export_web

__all__ = ["WEIGHT_FORMATS", "export_web"]
