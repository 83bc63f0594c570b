"""Sequence tagging: a BiLSTM part-of-speech tagger with character features.

Train with ``weft tag train``; load a run with :func:`load_tagger` (or ``weft.load``).
"""

from __future__ import annotations
