"""Command-line administration: users, tokens, db, export. `app.py` wires these in.

Every command takes `--data-dir` (default `$DRAFTROOM_DATA`, else `./data`) and honours
`$DATABASE_URL`. The command line acts as OPERATOR: whoever can run it owns the data directory.
Exit status: 0 on success, 1 when the command failed or (`db check`) found problems.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import Storage, open_storage
from .db import current_revision, head_revision, resolve_data_dir, resolve_database_url
from .errors import StorageError
from .types import OPERATOR, ReviewStatus, Role

Handler = Callable[[argparse.Namespace, Storage], int]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `users`, `tokens`, `db` and `export` on an argparse subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (default: $DRAFTROOM_DATA, else ./data)")

    def leaf(
        group: argparse._SubParsersAction, name: str, handler: Handler, help_: str
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, parents=[common], help=help_, description=help_)
        parser.set_defaults(handler=lambda args: _run(args, handler))
        return parser

    users = subparsers.add_parser("users", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    add = leaf(users, "add", _users_add, "create an account (prints a one-time password if none is given)")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.MEMBER.value)
    add.add_argument("--password", help="the password, or '-' to read it from stdin")
    add.add_argument("--display-name")
    leaf(users, "list", _users_list, "list accounts")
    set_role = leaf(users, "set-role", _users_set_role, "change an account's role")
    set_role.add_argument("name")
    set_role.add_argument("role", choices=[r.value for r in Role])
    leaf(users, "disable", _users_disable, "disable an account: it can do nothing").add_argument("name")
    leaf(users, "enable", _users_enable, "enable a disabled account").add_argument("name")

    tokens = subparsers.add_parser("tokens", help="manage API tokens").add_subparsers(
        dest="action", required=True
    )
    create = leaf(tokens, "create", _tokens_create, "create an API token; the token is the last line printed")
    create.add_argument("name", help="the user the token acts as")
    create.add_argument("--label", default="", help="a note to recognise the token by")
    leaf(tokens, "revoke", _tokens_revoke, "revoke a token by id or prefix").add_argument(
        "token", metavar="ID|PREFIX"
    )
    leaf(tokens, "list", _tokens_list, "list a user's tokens").add_argument("name")

    db = subparsers.add_parser("db", help="database maintenance").add_subparsers(dest="action", required=True)
    check = leaf(db, "check", _db_check, "find rows without files, files without rows and hash mismatches")
    check.add_argument("--repair", action="store_true", help="fix what is safe to fix")
    leaf(db, "upgrade", _db_upgrade, "apply database migrations (also done at every start)")

    export = leaf(subparsers, "export", _export, "write a zip of images with manifest.csv and manifest.json")
    export.add_argument(
        "--status", choices=[s.value for s in ReviewStatus], default=ReviewStatus.APPROVED.value
    )
    export.add_argument("--out", required=True, type=Path, help="the zip file to write")


def _run(args: argparse.Namespace, handler: Handler) -> int:
    try:
        with open_storage(resolve_data_dir(args.data_dir), resolve_database_url()) as storage:
            return handler(args, storage)
    except (StorageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _when(moment: object) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}Z"


def _users_add(args: argparse.Namespace, storage: Storage) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password == "-" else args.password
    created = storage.users.create(
        OPERATOR, args.name, role=args.role, password=password, display_name=args.display_name
    )
    print(f"created user {created.user.username} ({created.user.role})")
    if created.generated_password:
        print("one-time password (must be changed at first sign-in):")
        print(created.generated_password)
    return 0


def _users_list(_args: argparse.Namespace, storage: Storage) -> int:
    users = storage.users.list_all(OPERATOR)
    _table(
        [
            (u.id, u.username, u.role, "yes" if u.active else "no", u.display_name, _when(u.last_login_at))
            for u in users
        ],
        ("id", "username", "role", "active", "display name", "last sign-in"),
    )
    return 0


def _users_set_role(args: argparse.Namespace, storage: Storage) -> int:
    user = storage.users.set_role(OPERATOR, storage.users.find(args.name).id, args.role)
    print(f"{user.username} is now {user.role}")
    return 0


def _users_disable(args: argparse.Namespace, storage: Storage) -> int:
    user = storage.users.set_active(OPERATOR, storage.users.find(args.name).id, False)
    print(f"{user.username} is disabled")
    return 0


def _users_enable(args: argparse.Namespace, storage: Storage) -> int:
    user = storage.users.set_active(OPERATOR, storage.users.find(args.name).id, True)
    print(f"{user.username} is enabled")
    return 0


def _tokens_create(args: argparse.Namespace, storage: Storage) -> int:
    new = storage.tokens.create(OPERATOR, storage.users.find(args.name).id, args.label)
    print(f"token {new.info.id} for {new.info.username} (prefix {new.info.prefix}); it is shown only once:")
    print(new.secret)
    return 0


def _tokens_revoke(args: argparse.Namespace, storage: Storage) -> int:
    token = storage.tokens.revoke(OPERATOR, args.token)
    print(f"token {token.id} ({token.prefix}) of {token.username} is revoked")
    return 0


def _tokens_list(args: argparse.Namespace, storage: Storage) -> int:
    tokens = storage.tokens.list_for(OPERATOR, storage.users.find(args.name).id)
    _table(
        [
            (t.id, t.prefix, t.label, _when(t.created_at), _when(t.last_used_at), _when(t.revoked_at))
            for t in tokens
        ],
        ("id", "prefix", "label", "created", "last used", "revoked"),
    )
    return 0


def _db_check(args: argparse.Namespace, storage: Storage) -> int:
    report = storage.check.run(repair=args.repair)
    for problem in report.problems:
        state = "repaired" if problem.repaired else "PROBLEM"
        print(f"{state}: {problem.kind} {problem.store}/{problem.relpath}: {problem.detail}")
    unresolved = sum(not p.repaired for p in report.problems)
    print(
        f"checked {report.rows} rows and {report.files} files: "
        f"{len(report.problems)} problems, {unresolved} unresolved"
    )
    if unresolved and not args.repair:
        print("run `db check --repair` to fix what is safe to fix")
    return 0 if report.ok else 1


def _db_upgrade(_args: argparse.Namespace, storage: Storage) -> int:
    print(f"database at revision {current_revision(storage.db.engine)} (latest: {head_revision()})")
    return 0


def _export(args: argparse.Namespace, storage: Storage) -> int:
    summary = storage.export.write_zip(OPERATOR, args.out, args.status)
    print(f"wrote {summary.count} {args.status} images to {args.out}")
    if summary.missing_image_ids:
        print(
            f"left out {len(summary.missing_image_ids)} images whose files are missing: "
            f"{', '.join(map(str, summary.missing_image_ids))} (run `db check`)",
            file=sys.stderr,
        )
    return 0
