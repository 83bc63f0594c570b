"""Cleaning (Gutenberg stripping, case, Unicode forms) and directory/glob corpus input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_data import shared_file
from weft.config import DataConfig
from weft.data.cleaning import CleaningReport, clean_text, normalize_unicode, strip_gutenberg
from weft.data.corpus import expand_sources, read_text
from weft.data.prepare import load_text
from weft.errors import WeftError

MODERN = """The Project Gutenberg EBook of Tiny Tale, by Nobody

This eBook is for the use of anyone anywhere at no cost.

*** START OF THIS PROJECT GUTENBERG EBOOK TINY TALE ***




Once upon a time.
The end.

End of the Project Gutenberg EBook of Tiny Tale, by Nobody

*** END OF THIS PROJECT GUTENBERG EBOOK TINY TALE ***

Section 1. General Terms of Use ... license text ...
"""

NEWER = """Header
*** START OF THE PROJECT GUTENBERG EBOOK 12345 ***
Body line.
*** END OF THE PROJECT GUTENBERG EBOOK 12345 ***
License
"""

FOOTER_ONLY = """Chapter 1

It was a dark night.
*** END OF THIS PROJECT GUTENBERG EBOOK SOMETHING ***

A Word from Project Gutenberg
"""

OLD_HEADER = """Small print about etexts
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

Old text body.
End of Project Gutenberg's Old Text
"""


@pytest.mark.parametrize(
    ("text", "body"),
    [
        (MODERN, "Once upon a time.\nThe end.\n"),
        (NEWER, "Body line.\n"),
        (FOOTER_ONLY, "Chapter 1\n\nIt was a dark night.\n"),
        (OLD_HEADER, "Old text body.\n"),
    ],
)
def test_strip_gutenberg_variants(text: str, body: str) -> None:
    assert strip_gutenberg(text) == (body, True)


def test_text_without_markers_is_untouched() -> None:
    text = "Just some text.\nEnd of story.\n"
    assert strip_gutenberg(text) == (text, False)


def test_alice_header_and_footer() -> None:
    raw = read_text(shared_file("alice/wonderland.txt"))
    body, found = strip_gutenberg(raw)
    assert found
    assert body.startswith("ALICE'S ADVENTURES IN WONDERLAND")
    assert body.rstrip().endswith("THE END")
    assert "Gutenberg" not in body and "\ufeff" not in body


def test_anna_footer_only() -> None:
    raw = read_text(shared_file("anna/anna.txt"))
    body, found = strip_gutenberg(raw)
    assert found
    assert body.startswith("Chapter 1")
    assert "Gutenberg" not in body
    assert body.endswith('it."\n')


def test_clean_text_steps_and_report() -> None:
    report = CleaningReport()
    text = clean_text(NEWER, strip_boilerplate=True, lowercase=True, report=report, source="x")
    assert text == "body line.\n"
    assert report.notes and "x: removed" in report.notes[0]
    decomposed = "Cafe\u0301 ﬁne"
    assert normalize_unicode(decomposed, "NFC") == "Café ﬁne"
    assert normalize_unicode(decomposed, "NFKC") == "Café fine"
    with pytest.raises(WeftError, match="normalize"):
        normalize_unicode("x", "NFD")


def test_directories_and_globs_expand_sorted(tmp_path: Path) -> None:
    for name, text in [("b.txt", "bee\n"), ("a.txt", "ay"), ("c.md", "sea\n")]:
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert load_text([tmp_path], DataConfig())[0] == "ay\nbee\n"
    assert expand_sources([str(tmp_path / "*.md"), str(tmp_path / "a.txt")]) == [
        str(tmp_path / "c.md"),
        str(tmp_path / "a.txt"),
    ]
    with pytest.raises(WeftError, match="no files match"):
        expand_sources([str(tmp_path / "*.csv")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeftError, match=r"no \.txt files"):
        load_text([empty], DataConfig())[0]
    with pytest.raises(WeftError, match="not found"):
        load_text([tmp_path / "missing.txt"], DataConfig())[0]
