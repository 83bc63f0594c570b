"""benchmarks/finetune.py: held-out slices as text and as records."""

import csv
from pathlib import Path

from benchmarks.finetune import split_corpus


def read_rows(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def test_records_of_a_held_out_file_are_its_units_parted_by_blank_or_percent_lines(
        tmp_path: Path) -> None:
    held_out = tmp_path / "held-out"
    held_out.mkdir()
    fortunes = "".join(f"Fortune {i} says,\n  \"hi\", twice.\n%\n" for i in range(40))
    (held_out / "fortunes.txt").write_text(fortunes + "Last one.\n\n\nEnd.\n", encoding="utf-8")
    train, test, column = split_corpus("rec:fortunes", tmp_path, held_out)
    assert column == "text"
    rows = read_rows(train) + read_rows(test)
    assert rows[0] == 'Fortune 0 says,\n  "hi", twice.'
    assert rows[-2:] == ["Last one.", "End."] and len(rows) == 42
    assert len(read_rows(test)) == 42 - 42 * 9 // 10  # the last 10% held out


def test_text_slice_is_cut_at_a_line_end(tmp_path: Path) -> None:
    held_out = tmp_path / "held-out"
    held_out.mkdir()
    (held_out / "chat.txt").write_text("".join(f"line {i}\n" for i in range(100)),
                                       encoding="utf-8")
    train, test, column = split_corpus("new:chat", tmp_path, held_out)
    assert column is None
    assert train.read_text().endswith("\n") and test.read_text().startswith("line ")
