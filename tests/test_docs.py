from __future__ import annotations

from tools.cli_reference import DOC, render


def test_cli_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "run: python tools/cli_reference.py"
