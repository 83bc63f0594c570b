"""Nothing a downloaded run directory contains can run code when weft loads it."""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

import weft
from weft.errors import WeftError

SRC = Path(__file__).resolve().parent.parent / "src" / "weft"


class _Exploit:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _payloads(marker: Path) -> dict[str, bytes]:
    buffer = io.BytesIO()
    torch.save({"model": _Exploit(marker)}, buffer)  # torch's zip format around a pickle
    return {"raw pickle": pickle.dumps(_Exploit(marker)), "torch.save": buffer.getvalue()}


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "downloaded"
    shutil.copytree(tiny_run, copy)
    return copy


def test_the_payload_really_executes_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "proof"
    pickle.loads(_payloads(marker)["raw pickle"])
    assert marker.exists()


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save"])
@pytest.mark.parametrize("target", ["last.pt", "last.safetensors", "last.prev.safetensors",
                                    "model.safetensors"])
def test_planted_pickles_are_never_executed(run_copy: Path, tmp_path: Path, kind: str,
                                            target: str) -> None:
    marker = tmp_path / "pwned"
    for name in ("last.safetensors", "last.prev.safetensors"):
        (run_copy / name).unlink(missing_ok=True)
    (run_copy / target).write_bytes(_payloads(marker)[kind])
    with pytest.raises(WeftError) as error:
        if target == "model.safetensors":
            weft.load(run_copy, device="cpu")
        else:
            weft.resume(run_copy, quiet=True, max_steps=40)
    assert not marker.exists()
    message = str(error.value)
    assert ("pickled" in message and "run code" in message) if target == "last.pt" \
        else ("damaged" in message or "not a safetensors" in message)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "generation.json"])
def test_pickles_in_place_of_json_are_damaged_files(run_copy: Path, tmp_path: Path,
                                                    name: str) -> None:
    marker = tmp_path / "pwned"
    (run_copy / name).write_bytes(_payloads(marker)["raw pickle"])
    with pytest.raises(WeftError, match="damaged"):
        weft.load(run_copy, device="cpu")
    assert not marker.exists()


def test_no_unpickling_anywhere_in_weft() -> None:
    unsafe = re.compile(r"torch\.load\(|import pickle|from pickle|pickle\.loads?\(|"
                        r"weights_only=False|(?<![.\w])eval\(|(?<![.\w])exec\(")
    offenders = [f"{path.relative_to(SRC)}:{n}" for path in SRC.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if unsafe.search(line)]
    assert offenders == []


@pytest.mark.parametrize("missing", ["tokenizer.json", "model.safetensors"])
def test_a_missing_run_file_is_one_line_everywhere(tiny_run: Path, tmp_path: Path,
                                                   missing: str) -> None:
    from click.testing import CliRunner

    from weft.cli.main import cli

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / missing).unlink()
    with pytest.raises(WeftError, match=r"missing|no model"):
        weft.load(broken)
    commands = [["generate", str(broken)], ["info", str(broken)]]
    if missing == "tokenizer.json":  # resuming needs no best weights: last.safetensors serves
        commands.append(["train", "--resume", str(broken), "--max-steps", "40"])
    for args in commands:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1
