"""The command line: `python app.py users|tokens|db|export ...`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import app
from storage import Storage, open_storage
from storage.db import head_revision
from storage.errors import PermissionDenied
from storage.types import OPERATOR, Decision

from .conftest import FAST_HASHER
from .helpers import generate

ROOT = Path(__file__).resolve().parents[2]
Runner = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    data_dir: Path,
    database_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Runner]:
    """Runs `app.py` in-process against the test's database; returns (exit code, stdout, stderr)."""
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = app.main([*args, "--data-dir", str(data_dir)])
        out, err = capsys.readouterr()
        return code, out, err

    yield run


def _open(data_dir: Path, database_url: str | None) -> Storage:
    return open_storage(data_dir, database_url, password_hasher=FAST_HASHER)


def test_db_check_works_on_a_fresh_data_dir(tmp_path: Path) -> None:
    env = {**os.environ, "DRAFTROOM_DATA": str(tmp_path / "fresh")}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "app.py", "db", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "0 problems" in done.stdout
    assert (tmp_path / "fresh" / "draftroom.db").is_file()


def test_user_administration(cli: Runner, data_dir: Path, database_url: str | None) -> None:
    code, out, _ = cli("users", "add", "Alice", "--role", "reviewer", "--password", "a long password")
    assert code == 0 and "created user Alice (reviewer)" in out
    code, out, _ = cli("users", "add", "bob")
    one_time = out.strip().splitlines()[-1]
    assert code == 0 and "one-time password" in out
    assert cli("users", "set-role", "BOB", "admin")[0] == 0
    assert cli("users", "disable", "alice")[0] == 0
    code, out, _ = cli("users", "list")
    assert [line.split()[:4] for line in out.splitlines()[1:]] == [
        ["1", "Alice", "reviewer", "no"],
        ["2", "bob", "admin", "yes"],
    ]
    with _open(data_dir, database_url) as storage:
        assert storage.users.authenticate("bob", one_time).must_change_password
    code, _, err = cli("users", "add", "ALICE", "--password", "a long password")
    assert code == 1 and "taken" in err
    code, _, err = cli("users", "set-role", "nobody", "admin")
    assert code == 1 and "no user 'nobody'" in err
    code, _, err = cli("users", "add", "carol", "--password", "Password2024!")
    assert code == 1 and "most common passwords" in err
    code, _, err = cli("users", "add", "carol", "--password", "eleven char")
    assert code == 1 and "at least 12 characters" in err


def test_tokens_print_the_secret_last_and_can_be_revoked(
    cli: Runner, data_dir: Path, database_url: str | None
) -> None:
    cli("users", "add", "alice", "--password", "a long password")
    code, out, _ = cli("tokens", "create", "alice", "--label", "ci")
    secret = out.strip().splitlines()[-1]
    assert code == 0 and secret.startswith("dr_")
    with _open(data_dir, database_url) as storage:
        assert storage.tokens.authenticate(secret).username == "alice"
    code, out, _ = cli("tokens", "list", "alice")
    assert secret[:10] in out and "ci" in out and secret not in out
    assert cli("tokens", "revoke", secret[:10])[0] == 0
    with _open(data_dir, database_url) as storage, pytest.raises(PermissionDenied, match="revoked"):
        storage.tokens.authenticate(secret)


def test_db_check_exit_status_and_repair(cli: Runner, data_dir: Path, database_url: str | None) -> None:
    assert cli("db", "upgrade")[1].startswith(f"database at revision {head_revision()}")
    with _open(data_dir, database_url) as storage:
        orphan = storage.images.put(b"left by a crash")
    os.utime(storage.images.path_for(orphan.sha256), (0, 0))
    code, out, _ = cli("db", "check")
    assert code == 1 and "PROBLEM: orphan_file images/" in out
    code, out, _ = cli("db", "check", "--repair")
    assert code == 0 and "repaired: orphan_file" in out
    assert cli("db", "check")[0] == 0


def test_export_writes_the_zip(cli: Runner, data_dir: Path, database_url: str | None, tmp_path: Path) -> None:
    with _open(data_dir, database_url) as storage:
        author = storage.users.create(OPERATOR, "alice", password="a long password").user.id
        reviewer = storage.users.create(OPERATOR, "rita", role="reviewer", password="a long password").user.id
        image = generate(storage, author, images=1).images[0]
        storage.reviews.submit(author, image.id)
        storage.reviews.decide(reviewer, image.id, Decision.APPROVE)
    code, out, _ = cli("export", "--status", "approved", "--out", str(tmp_path / "out.zip"))
    assert code == 0 and "wrote 1 approved images" in out
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert {"manifest.csv", "manifest.json"} < set(archive.namelist()) and len(archive.namelist()) == 3


def test_serve_is_the_default_command(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def add_serve_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        serve = subparsers.add_parser("serve")
        serve.add_argument("--data-dir")
        serve.set_defaults(handler=lambda args: seen.append(args) or 0)

    monkeypatch.setattr(app, "add_serve_command", add_serve_command)
    assert app.main([]) == 0 and app.main(["--data-dir", "/tmp/x"]) == 0
    assert [args.data_dir for args in seen] == [None, "/tmp/x"]
