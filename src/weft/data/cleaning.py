"""Text cleaning before tokenization: Project Gutenberg boilerplate, case, Unicode form.

Each step is opt-in from the CLI (``--strip-gutenberg``, ``--lowercase``, ``--normalize``)
because each changes what the model learns; :func:`clean_text` applies them in a fixed order
and says what it did so the caller can report it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from weft.config import NORMAL_FORMS
from weft.errors import WeftError

# Header end: "*** START OF THIS PROJECT GUTENBERG EBOOK ALICE'S ... ***" (also THE, E-BOOK,
# "***START OF" without spaces), and the old "*END*THE SMALL PRINT!" header of 1990s files.
_START = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THIS|THE) PROJECT GUTENBERG E-?(?:BOOK|TEXT)[^\n]*$"
    r"|^[ \t]*\*END\*THE SMALL PRINT![^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Footer start: "*** END OF THIS/THE PROJECT GUTENBERG EBOOK ... ***" and older lines such as
# "End of the Project Gutenberg EBook of ..." or "End of Project Gutenberg's Alice's ...".
_END = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THIS|THE) PROJECT GUTENBERG E-?(?:BOOK|TEXT)[^\n]*$"
    r"|^[ \t]*End of (?:the )?Project Gutenberg(?:'s)?[^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """Cut the Project Gutenberg header and footer (license, credits) off ``text``.

    Keeps what lies between the START marker line and the first END marker after it; either
    may be missing (some copies carry only the footer). Returns the text, with leading and
    trailing blank lines removed, and whether any marker was found.
    """
    start_match = _START.search(text)
    begin = start_match.end() if start_match else 0
    end_match = _END.search(text, begin)
    end = end_match.start() if end_match else len(text)
    if not start_match and not end_match:
        return text, False
    body = text[begin:end].strip("\n")
    return body + "\n", True


def normalize_unicode(text: str, form: str) -> str:
    """NFC joins combining accents (e + ◌́ -> é); NFKC also folds compatibility forms
    (ligatures, full-width letters, superscripts) to plain ones."""
    if form not in NORMAL_FORMS:
        raise WeftError(f"--normalize must be one of: {', '.join(NORMAL_FORMS)} (got {form!r})")
    return unicodedata.normalize("NFC" if form == "NFC" else "NFKC", text)


@dataclass
class CleaningReport:
    """What :func:`clean_text` changed, in words, for the CLI to print."""

    notes: list[str] = field(default_factory=list)


def clean_text(
    text: str,
    *,
    strip_boilerplate: bool = False,
    lowercase: bool = False,
    normalize: str | None = None,
    source: str = "corpus",
    report: CleaningReport | None = None,
) -> str:
    """Apply the chosen cleaning steps: Gutenberg stripping, Unicode normalization, lowercase."""
    if strip_boilerplate:
        before = len(text)
        text, found = strip_gutenberg(text)
        if report is not None:
            if found:
                report.notes.append(
                    f"{source}: removed Project Gutenberg header/footer "
                    f"({before - len(text):,} of {before:,} characters)"
                )
            else:
                report.notes.append(f"{source}: no Project Gutenberg markers found, kept as is")
    if normalize:
        text = normalize_unicode(text, normalize)
    if lowercase:
        text = text.lower()
    return text
