"""Draftroom command line: `python app.py [serve|users|tokens|db|export|models] ...` (no command: serve).

Wiring only. Each package registers its own subcommands on the shared argparse tree and sets a
`handler(args) -> int` default; `main` calls it and exits with what it returns:
- `webapp.cli.add_serve_command`: serve;
- `storage.cli.add_commands`: users, tokens, db, export;
- `model.hub_cli.add_models_command`: models (pull, list, remove).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from model.hub_cli import add_models_command
from storage.cli import add_commands as add_storage_commands
from webapp.cli import add_serve_command

DEFAULT_COMMAND = "serve"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Draftroom: a team studio for drafting images from text, with review before anything is final.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_serve_command(subparsers)
    add_storage_commands(subparsers)
    add_models_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, DEFAULT_COMMAND)  # `python app.py --port 8000` serves
    args = parser.parse_args(args_list)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
