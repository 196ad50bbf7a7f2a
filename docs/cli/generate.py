"""Writes docs/cli/<command>.md, one page per `anids-md` subcommand, from its --help text, and
docs/cli/README.md listing them. tests/test_readme.py checks that the pages are current.

    python docs/cli/generate.py
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def pages() -> dict[str, str]:
    """File name -> text of every page, generated from the parser."""
    from anids_md.cli import COMMANDS, build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    result = {}
    for name, helptext, *_ in COMMANDS:
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            subparsers[name].print_help()
        result[f"{name}.md"] = f"# `anids-md {name}`\n\n{helptext[0].upper() + helptext[1:]}.\n\n```text\n{buffer.getvalue().rstrip()}\n```\n"
    index = "\n".join(f"- [`{name}`]({name}.md): {helptext}" for name, helptext, *_ in COMMANDS)
    result["README.md"] = ("# The `anids-md` command\n\nOne page per subcommand, generated from its `--help` "
                           f"(`python docs/cli/generate.py`).\n\n{index}\n")
    return result


if __name__ == "__main__":
    import os

    os.environ.setdefault("COLUMNS", "100")  # the same wrapping wherever it runs
    for file, text in pages().items():
        (FOLDER / file).write_text(text)
        print(f"wrote docs/cli/{file}")
