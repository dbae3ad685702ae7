"""Draftroom command line: `python app.py [serve|users|tokens|db|export] ...` (no command: serve).

Wiring only. Each package registers its own subcommands on the shared argparse tree and sets a
`handler(args) -> int` default; `main` calls it and exits with what it returns:
- `storage.cli.add_commands`: users, tokens, db, export;
- `webapp.cli.add_serve_command`: serve (when the web package is installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from storage.cli import add_commands as add_storage_commands

DEFAULT_COMMAND = "serve"


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is absent
        return False


def build_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """The argument parser and the names of the commands it knows."""
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Draftroom: a team studio for drafting images from text, with review before anything is final.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if _has_module("webapp.cli"):
        from webapp.cli import add_serve_command

        add_serve_command(subparsers)
    add_storage_commands(subparsers)
    return parser, set(subparsers.choices)


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        if DEFAULT_COMMAND not in commands:
            parser.error("the studio is not installed yet (webapp.cli is missing); see --help for other commands")
        args_list.insert(0, DEFAULT_COMMAND)
    args = parser.parse_args(args_list)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
