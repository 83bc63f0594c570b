"""Reading training text: files (UTF-8, with or without BOM, CRLF or LF) and built-in corpora.

A source may also be a directory (its ``*.txt`` files, sorted by name) or a glob pattern
(``books/*.txt``, ``data/**/*.md``; matches sorted), expanded by :func:`expand_sources`.

Built-in corpora need no download: ``builtin:pydoc-topics`` is the standard library's own
documentation topics (``pydoc_data.topics``), shipped with every Python installation.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from weft.errors import WeftError

BUILTIN_PREFIX = "builtin:"
STDIN = "standard input"  # the name decode_text is given for text read from stdin


def _pydoc_topics() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


BUILTIN_CORPORA: dict[str, Callable[[], str]] = {"pydoc-topics": _pydoc_topics}


def decode_text(data: bytes, source: str) -> str:
    """Decode UTF-8 (BOM optional) and normalize line endings to ``\\n``."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        convert = ("pipe it through `iconv -f latin1 -t utf-8`" if source == STDIN else
                   f"with `iconv -f latin1 -t utf-8 {source} > fixed.txt`")
        raise WeftError(
            f"{source} is not valid UTF-8 (byte {exc.start}, line {line}: "
            f"{data[exc.start:exc.start + 4]!r}). Convert it first, for example {convert}."
        ) from None
    reject_binary(text, source)
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Control characters that ordinary text does not contain (tab, newlines, form feed excepted).
_CONTROL = {c: None for c in range(32) if chr(c) not in "\t\n\r\f\v"}


def reject_binary(text: str, source: str) -> None:
    """Binary data that happens to decode (or UTF-16 text) would explode the vocabulary."""
    sample = text[: 1 << 20]
    controls = len(sample) - len(sample.translate(_CONTROL))
    if "\x00" in sample or controls > max(len(sample) // 100, 8):
        hint = (" It may be UTF-16: convert it with `iconv -f utf-16 -t utf-8`."
                if "\x00" in sample else "")
        raise WeftError(f"{source} looks like binary data, not text ({controls:,} control "
                        f"characters in its first {len(sample):,}).{hint} Pass text files.")


def read_text(source: str | os.PathLike[str]) -> str:
    """Read one corpus source: a file path or ``builtin:NAME``."""
    name = str(source)
    if name.startswith(BUILTIN_PREFIX):
        key = name[len(BUILTIN_PREFIX):]
        if key not in BUILTIN_CORPORA:
            raise WeftError(
                f"unknown built-in corpus {key!r}; available: "
                + ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_CORPORA)
            )
        return BUILTIN_CORPORA[key]()
    path = check_corpus_file(name)
    text = decode_text(path.read_bytes(), name)
    if not text.strip():
        raise WeftError(empty_corpus(name))
    return text


def check_corpus_file(name: str) -> Path:
    """The path of a corpus file that exists and is not a directory (else a one-line error)."""
    path = Path(name)
    if not path.exists():
        raise WeftError(f"corpus file not found: {name}")
    if path.is_dir():
        raise WeftError(f"{name} is a directory; pass the text files inside it")
    return path


def empty_corpus(name: str) -> str:
    return f"{name} is empty: a corpus needs some text to learn from"


def _is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def expand_sources(sources: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files to read, in order: directories become their ``*.txt`` files, globs their matches
    (both sorted, so runs are reproducible); ``builtin:`` names and plain paths stay."""
    expanded: list[str] = []
    for source in sources:
        name = str(source)
        path = Path(name)
        if name.startswith(BUILTIN_PREFIX) or path.is_file():
            expanded.append(name)
        elif path.is_dir():
            files = sorted(str(p) for p in path.glob("*.txt") if p.is_file())
            if not files:
                raise WeftError(f"directory {name} has no .txt files; pass the files themselves")
            expanded.extend(files)
        elif _is_glob(name):
            files = sorted(p for p in glob.glob(name, recursive=True) if Path(p).is_file())
            if not files:
                raise WeftError(f"no files match {name!r}")
            expanded.extend(files)
        else:
            expanded.append(name)  # read_text reports it as missing
    return expanded
