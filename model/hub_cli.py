"""`python app.py models pull|list|remove`: the real models kept in ``<data-dir>/models`` (see model.hub).

    models pull REPO_ID|ALIAS [--revision R] [--name NAME] [--device D]   download, then check that it loads
    models list                                                           name, size and family of each
    models remove NAME

Exit status: 0 on success, 1 when the download, the check or the removal failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.hub import ALIASES, HubError, list_models, pull, remove


def add_models_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `models` and its actions on app.py's argparse tree; each handler returns the exit status."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (default: $DRAFTROOM_DATA, else ./data)")
    models = subparsers.add_parser("models", help="pull, list and remove real models in <data-dir>/models")
    actions = models.add_subparsers(dest="action", required=True)
    pull_ = actions.add_parser(
        "pull",
        parents=[common],
        help="download a diffusers-format model (safetensors only) and check it loads",
        description="Download a diffusers-format model from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN apply) "
        f"into <data-dir>/models/NAME. Aliases: {', '.join(sorted(ALIASES))}. Rerun to resume.",
    )
    pull_.add_argument("repo", metavar="REPO_ID|ALIAS")
    pull_.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull_.add_argument(
        "--name", help="folder name under <data-dir>/models (default: the repo's or alias's name)"
    )
    pull_.add_argument(
        "--device", help="device for the load check: cuda, mps or cpu (default: the best available)"
    )
    pull_.set_defaults(handler=_pull)
    actions.add_parser(
        "list", parents=[common], help="the models in <data-dir>/models with size and family"
    ).set_defaults(handler=_list)
    remove_ = actions.add_parser("remove", parents=[common], help="delete a model from <data-dir>/models")
    remove_.add_argument("name", metavar="NAME")
    remove_.set_defaults(handler=_remove)


def _data_dir(args: argparse.Namespace) -> Path:
    from storage.db import resolve_data_dir

    return resolve_data_dir(args.data_dir)


def _pull(args: argparse.Namespace) -> int:
    from httpx2 import HTTPError  # huggingface_hub's transport: its Hub errors and network failures

    from model.families import ModelLoadError, load_family

    try:
        folder = pull(args.repo, _data_dir(args), revision=args.revision, name=args.name)
    except (HubError, HTTPError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        family = load_family(folder, device=args.device)
    except ModelLoadError as error:
        print(f"error: downloaded to {folder} but it does not load: {error}", file=sys.stderr)
        return 1
    print(f"ok: {folder} loads as {family.info.family}; serve it with: app.py serve --model {folder.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from storage.cli import _table

    _table(
        [(m.name, _size(m.size_bytes), m.family or "unknown") for m in list_models(_data_dir(args))],
        ("NAME", "SIZE", "FAMILY"),
    )
    return 0


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 2**30:.2f} GiB" if size_bytes >= 2**30 else f"{size_bytes / 2**20:.1f} MiB"


def _remove(args: argparse.Namespace) -> int:
    try:
        print(f"removed {remove(args.name, _data_dir(args))}")
    except HubError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
