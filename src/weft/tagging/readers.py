"""Reading tagged sentences: CoNLL-U, ``word/TAG`` lines, two-column TSV and Penn Treebank trees.

Every reader returns a list of :class:`TaggedSentence`. Bad input raises :class:`WeftError`
naming the file and line, so the CLI can print it without a traceback.

Formats:

* ``conllu``: Universal Dependencies files. Multiword token lines (``3-4``) and empty nodes
  (``8.1``) are skipped: their words are tagged on the ordinary lines. The tag comes from the
  UPOS (default) or XPOS column.
* ``wordtag``: one sentence per line, tokens ``word/TAG`` separated by spaces; the tag is what
  follows the *last* slash, so ``1/2/CD`` is the word ``1/2``. ``\\/`` in a word means ``/``.
* ``tsv``: ``word<TAB>tag`` (or ``word tag``) per line, a blank line between sentences; the
  two-column format of CoNLL-2003 and WNUT-17 named-entity data.
* ``ptb``: bracketed Penn Treebank trees (``.mrg``): a single file, a folder of them, or a
  ``.zip`` such as NLTK's ``treebank.zip`` (its ``combined/*.mrg`` files, in name order).
  A tag map (e.g. ``en-ptb.map`` from the universal tagset, a plain file or inside its zip)
  maps the tags; tags the map does not list (the ``-NONE-`` trace tokens) become ``X``, as
  NLTK does. ``keep_traces=False`` drops ``-NONE-`` tokens.

In the ``wordtag`` and ``tsv`` formats a line that starts with ``#`` and does not parse as
tagged words is a comment, as format detection takes it.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from weft.data.corpus import decode_text
from weft.errors import WeftError

FORMATS = ("auto", "conllu", "wordtag", "tsv", "ptb")
TRACE_TAG = "-NONE-"
UNMAPPED_TAG = "X"
# What a tag looks like to format detection: O, B-person, NOUN, NNP, PRP$ (not a lowercase word)
_TAG_LIKE = re.compile(r"O|[BIES]-\S+|[A-Z][A-Z$_-]*")


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its words and one tag per word."""

    words: tuple[str, ...]
    tags: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file; the CLI flags of the same names."""

    format: str = "auto"
    column: str = "upos"  # CoNLL-U: upos or xpos
    tagset_map: str | None = None  # a .map file or a zip holding one (any format)
    keep_traces: bool = True  # ptb: keep -NONE- tokens
    sentences: str | None = None  # a fraction slice such as ":0.9" or "0.9:"


def read_tagged(path: str | Path, options: ReadOptions | None = None) -> list[TaggedSentence]:
    """Read a tagged file in any supported format and apply the options."""
    options = options or ReadOptions()
    if options.format not in FORMATS:
        raise WeftError(f"unknown format {options.format!r}; choose one of: {', '.join(FORMATS)}")
    source = str(path)
    p = Path(path)
    if not p.exists():
        raise WeftError(f"file not found: {source}")
    fmt = options.format
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt == "ptb":
        mapping = load_tag_map(options.tagset_map) if options.tagset_map else None
        sentences = read_ptb(p, mapping, options.keep_traces)
    else:
        if p.is_dir():
            raise WeftError(f"{source} is a directory; only the ptb format reads folders")
        text = decode_text(p.read_bytes(), source)
        if fmt == "conllu":
            sentences = parse_conllu(text, source, options.column)
        elif fmt == "wordtag":
            sentences = parse_wordtag(text, source)
        else:
            sentences = parse_tsv(text, source)
        if options.tagset_map:  # any format's tags map as the Penn Treebank's do
            mapping = load_tag_map(options.tagset_map)
            sentences = [_map_sentence(s, mapping, keep_traces=True) for s in sentences]
    if not sentences:
        raise WeftError(f"{source} holds no tagged sentences (read as {fmt})")
    if options.sentences:
        sentences = slice_fraction(sentences, options.sentences)
        if not sentences:
            raise WeftError(f"--sentences {options.sentences} selects no sentences of {source}")
    return sentences


def detect_format(path: Path) -> str:
    """Guess the format from the name, then from the first meaningful line."""
    name = path.name.lower()
    if path.is_dir() or name.endswith((".zip", ".mrg")):
        return "ptb"
    if name.endswith(".conllu"):
        return "conllu"
    text = decode_text(path.read_bytes()[: 1 << 16], str(path))
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("("):
            return "ptb"
        fields = line.split("\t")
        if len(fields) == 10 and re.fullmatch(r"\d+(?:[-.]\d+)?", fields[0]):
            return "conllu"
        if len(fields) == 2:
            return "tsv"
        if all("/" in tok.strip("/") for tok in stripped.split()):
            return "wordtag"
        if len(stripped.split()) == 2 and _TAG_LIKE.fullmatch(stripped.split()[1]):
            return "tsv"  # word and tag separated by a space; "just words" is prose
        break
    raise WeftError(
        f"cannot tell the format of {path}; pass --format (one of: {', '.join(FORMATS[1:])})"
    )


def slice_fraction(sentences: list[TaggedSentence], spec: str) -> list[TaggedSentence]:
    """Sentences ``[a*n : b*n]`` for a spec ``a:b`` of fractions in [0, 1] (either may be empty)."""
    match = re.fullmatch(r"\s*([0-9.]*)\s*:\s*([0-9.]*)\s*", spec)
    try:
        if not match:
            raise ValueError
        lo = float(match.group(1)) if match.group(1) else 0.0
        hi = float(match.group(2)) if match.group(2) else 1.0
    except ValueError:
        raise WeftError(
            f"cannot read --sentences {spec!r}; use fractions like :0.9 or 0.9:"
        ) from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise WeftError(f"--sentences {spec!r}: need 0 <= start <= end <= 1")
    n = len(sentences)
    return sentences[round(lo * n) : round(hi * n)]


def _sentence(words: list[str], tags: list[str]) -> TaggedSentence:
    return TaggedSentence(tuple(words), tuple(tags))


def _blank_line_sentences(
    text: str, parse_line: Callable[[int, str], tuple[str, str] | None]
) -> list[TaggedSentence]:
    """Sentences separated by blank lines; ``parse_line`` gives each line's word and tag, or
    None for a line that holds no word (a comment, a multiword range)."""
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if words:
                sentences.append(_sentence(words, tags))
                words, tags = [], []
            continue
        parsed = parse_line(lineno, line)
        if parsed is not None:
            words.append(parsed[0])
            tags.append(parsed[1])
    if words:
        sentences.append(_sentence(words, tags))
    return sentences


def parse_conllu(text: str, source: str, column: str = "upos") -> list[TaggedSentence]:
    """CoNLL-U: skips comments, multiword token ranges and empty nodes."""
    if column not in ("upos", "xpos"):
        raise WeftError(f"--column must be upos or xpos, not {column!r}")
    col = 3 if column == "upos" else 4

    def word_and_tag(lineno: int, line: str) -> tuple[str, str] | None:
        if line.startswith("#"):
            return None
        fields = line.split("\t")
        if len(fields) != 10:
            raise WeftError(
                f"{source}:{lineno}: a CoNLL-U line needs 10 tab-separated fields, found "
                f"{len(fields)}: {line[:60]!r}"
            )
        token_id = fields[0]
        if "-" in token_id or "." in token_id:
            return None  # multiword token range or empty node: not a word of the sentence
        if not token_id.isdigit():
            raise WeftError(f"{source}:{lineno}: bad token id {token_id!r}")
        tag = fields[col]
        if tag == "_" or not tag:
            raise WeftError(f"{source}:{lineno}: word {fields[1]!r} has no {column.upper()} tag")
        return fields[1], tag

    return _blank_line_sentences(text, word_and_tag)


def parse_wordtag(text: str, source: str) -> list[TaggedSentence]:
    """One sentence per line of ``word/TAG`` tokens."""
    sentences = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        tokens = line.split()
        if not tokens:
            continue
        words, tags = [], []
        for token in tokens:
            word, sep, tag = token.rpartition("/")
            if not sep or not word or not tag:
                if line.lstrip().startswith("#"):
                    break  # a comment: format detection skips these lines too
                raise WeftError(
                    f"{source}:{lineno}: token {token!r} is not word/TAG (in {line.strip()[:60]!r})"
                )
            words.append(word.replace("\\/", "/"))
            tags.append(tag)
        else:
            # ``#/#`` (Penn's pound sign) parses as a token, so such a line is a sentence
            sentences.append(_sentence(words, tags))
    return sentences


def parse_tsv(text: str, source: str) -> list[TaggedSentence]:
    """``word<TAB>tag`` lines, sentences separated by blank lines."""

    def word_and_tag(lineno: int, line: str) -> tuple[str, str] | None:
        # Tab-separated when the line has a tab (a word may then hold spaces), else any
        # whitespace: CoNLL-2003-style two-column files use a space.
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) != 2 or not fields[0] or not fields[1].strip():
            if line.startswith("#"):
                return None  # a comment; ``#tag<TAB>O`` (a hashtag, as in WNUT-17) is a word
            raise WeftError(
                f"{source}:{lineno}: expected word<TAB>tag (or word and tag separated by a "
                f"space), found {line[:60]!r}"
            )
        return fields[0], fields[1].strip()

    return _blank_line_sentences(text, word_and_tag)


_PTB_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_ptb(text: str, source: str) -> list[TaggedSentence]:
    """Leaves ``(TAG word)`` of bracketed trees; a sentence ends where its outer bracket closes."""
    tokens = _PTB_TOKEN.findall(text)
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    depth = 0
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if (
            tok == "("
            and i + 3 < n
            and tokens[i + 1] not in "()"
            and tokens[i + 2] not in "()"
            and tokens[i + 3] == ")"
        ):
            tags.append(tokens[i + 1])
            words.append(tokens[i + 2])
            i += 4
            if depth == 0:  # a bare leaf outside any tree
                raise WeftError(f"{source}: leaf ({tokens[i - 3]} {tokens[i - 2]}) outside a tree")
            continue
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
            if depth < 0:
                raise WeftError(f"{source}: unbalanced ')' in tree {len(sentences) + 1}")
            if depth == 0 and words:
                sentences.append(_sentence(words, tags))
                words, tags = [], []
        i += 1
    if depth != 0:
        raise WeftError(f"{source}: tree {len(sentences) + 1} is missing a closing ')'")
    return sentences


def read_ptb(
    path: Path, mapping: dict[str, str] | None = None, keep_traces: bool = True
) -> list[TaggedSentence]:
    """Trees from a ``.mrg`` file, a folder of them or a zip (``*/combined/*.mrg`` preferred)."""
    files: list[tuple[str, Callable[[], bytes]]] = []
    if path.is_dir():
        files = [(str(f), f.read_bytes) for f in sorted(path.rglob("*.mrg"))]
    elif path.suffix.lower() == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise WeftError(f"{path} is not a valid zip file") from None
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".mrg"))
        combined = [n for n in names if "/combined/" in f"/{n}"]
        files = [
            (f"{path}:{n}", (lambda n=n: archive.read(n)))  # type: ignore[misc]
            for n in (combined or names)
        ]
    else:
        files = [(str(path), path.read_bytes)]
    if not files:
        raise WeftError(f"no .mrg tree files found in {path}")
    sentences: list[TaggedSentence] = []
    for name, read in files:
        sentences.extend(parse_ptb(decode_text(read(), name), name))
    return [s for s in (_map_sentence(s, mapping, keep_traces) for s in sentences) if s.words]


def _map_sentence(
    sentence: TaggedSentence, mapping: dict[str, str] | None, keep_traces: bool
) -> TaggedSentence:
    pairs = [
        (w, t) for w, t in zip(sentence.words, sentence.tags, strict=True)
        if keep_traces or t != TRACE_TAG
    ]
    if mapping is not None:
        pairs = [(w, mapping.get(t, UNMAPPED_TAG)) for w, t in pairs]
    return TaggedSentence(tuple(w for w, _ in pairs), tuple(t for _, t in pairs))


def load_tag_map(spec: str, member: str = "en-ptb.map") -> dict[str, str]:
    """A tag map: lines ``FROM<TAB>TO``, read from a file or from ``member`` inside a zip.

    ``archive.zip:path/inside.map`` picks another map from the zip.
    """
    zip_path, _, inner = spec.partition(".zip:")
    if inner:
        zip_path += ".zip"
        member = inner
    path = Path(zip_path if inner else spec)
    if not path.exists():
        raise WeftError(f"tag map not found: {path}")
    if path.suffix.lower() == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise WeftError(f"{path} is not a valid zip file") from None
        matches = [n for n in archive.namelist() if n == member or n.endswith("/" + member)]
        if not matches:
            raise WeftError(f"{path} has no {member}")
        source = f"{path}:{matches[0]}"
        text = decode_text(archive.read(matches[0]), source)
    else:
        source = str(path)
        text = decode_text(path.read_bytes(), source)
    mapping: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise WeftError(f"{source}:{lineno}: a tag map line needs FROM and TO, found {line!r}")
        mapping[fields[0]] = fields[1]
    if not mapping:
        raise WeftError(f"tag map {source} is empty")
    return mapping
