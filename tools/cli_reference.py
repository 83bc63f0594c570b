"""Write docs/cli.md from the click commands themselves, so the reference never drifts.

    python tools/cli_reference.py          # rewrite docs/cli.md
    python tools/cli_reference.py --check  # exit 1 when docs/cli.md is out of date (tests run this)
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

from weft.cli.main import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

HEADER = """# Command-line reference

Generated from the code by `python tools/cli_reference.py`; do not edit by hand.
Flags are the configuration field names with dashes (`--hidden-size` is `hidden_size` in
`config.json` and in the Python API). User errors print `error: ...` and exit with status 2.
"""


def _default(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "off"
    if isinstance(param, click.Option) and isinstance(param.show_default, str):
        return f"`{param.show_default}`"  # e.g. a default that depends on --level
    default = param.default
    if default is None or default == () or type(default).__name__ == "Sentinel":
        return "—"  # click >= 8.3 marks "no default" with a sentinel
    if default == "":
        return '`""`'
    return f"`{default}`"


def _command_section(name: str, command: click.Command) -> list[str]:
    lines = [f"## `weft {name}`", "", inspect.cleandoc(command.help or ""), ""]
    args = [p for p in command.params if isinstance(p, click.Argument)]
    if args:
        usage = " ".join(a.human_readable_name + ("..." if a.nargs == -1 else "") for a in args)
        lines += [f"Arguments: `{usage}`", ""]
    options = [p for p in command.params if isinstance(p, click.Option)]
    if options:
        lines += ["| flag | default | meaning |", "| --- | --- | --- |"]
        for opt in options:
            flags = ", ".join(f"`{f}`" for f in opt.opts)
            if isinstance(opt.type, click.Choice):
                flags += " (" + "\\|".join(str(c) for c in opt.type.choices) + ")"
            meaning = (opt.help or "").replace("|", "\\|")
            lines.append(f"| {flags} | {_default(opt)} | {meaning} |")
        lines.append("")
    return lines


def _walk(group: click.Group, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            lines += [f"## `weft {full}`", "", (command.help or "").strip(), ""]
            lines += _walk(command, prefix=f"{full} ")
        else:
            lines += _command_section(full, command)
    return lines


def render() -> str:
    return "\n".join([HEADER, *_walk(cli)]).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/cli.md is out of date, writing nothing")
    args = parser.parse_args()  # a typo or --help must not rewrite the file
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC.name} is out of date: run python tools/cli_reference.py")
            sys.exit(1)
        return
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
