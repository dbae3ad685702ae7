"""`python app.py serve`: open the data directory, load the model, serve the studio with uvicorn.

    serve [--host 127.0.0.1] [--port 7860] [--data-dir D] [--model NAME|PATH] [--no-auth] [--max-batch N]
          [--max-queue N] [--max-user-jobs N] [--max-user-images N] [--allowed-hosts H ...]
          [--allowed-origins URL ...] [--instance-id ID] [--device D] [--dtype fp16|bf16|fp32]
          [--compile] [--channels-last] [--cpu-offload] [--engine local|ray] [--ray-address ADDR]
          [--replicas N] [--min-replicas N --max-replicas N] [--gpus-per-replica G] [--cpus-per-replica C]

Several front-ends may share one database and data directory, each under its own `--instance-id`
(docs/DEPLOY.md). `--engine ray` runs the model as a Ray Serve deployment (model/engine/engine_ray.py); Ray
is imported only then, so the default install does not need it.

Auth is always on, except with an explicit `--no-auth` on a loopback host; any other host with
`--no-auth` refuses to start. On the first start with no accounts, an `admin` account is created
and its one-time password printed once; the studio asks for a new one at first sign-in.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.engine import Engine

from model.device_options import add_device_arguments, device_options

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "model" / "weights" / "embedded"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

log = logging.getLogger("draftroom")


def add_serve_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `serve` on app.py's argparse tree; its handler returns the exit status."""
    serve = subparsers.add_parser(
        "serve",
        help="serve the studio (UI at /, REST API at /api/v1)",
        description="Serve the studio: the UI at / and the REST API at /api/v1.",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--data-dir", help="data directory (default: $DRAFTROOM_DATA, else ./data)")
    serve.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        metavar="NAME|PATH",
        help="a model pulled into <data-dir>/models, or a folder: prior/ + decoder/ (Kandinsky 2.2 "
        "layout) or a Stable Diffusion folder, or an SD 1.x/SDXL single-file .safetensors "
        "(default: the embedded model)",
    )
    serve.add_argument(
        "--no-auth", action="store_true", help="no sign-in; everyone acts as the admin (loopback hosts only)"
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="rows per model call across users, an image taking one per decoder candidate (default: 8 images "
        "at the model's default candidates, 64 rows on the embedded model); a kind of batch that runs out of "
        "GPU memory is held to half as many rows from then on",
    )
    serve.add_argument(
        "--max-queue", type=int, default=64, help="queued jobs before new ones get 429 (default 64)"
    )
    serve.add_argument(
        "--max-user-jobs",
        type=int,
        default=8,
        help="one user's queued jobs before their next one gets 429, checked before --max-queue (default 8)",
    )
    serve.add_argument(
        "--max-user-images",
        type=int,
        default=32,
        help="one user's queued images before their next job gets 429 (default 32)",
    )
    add_device_arguments(serve)
    serve.add_argument(
        "--allowed-hosts",
        nargs="+",
        metavar="HOST",
        help="host names clients may use in the Host header, e.g. studio.example.org or "
        "*.example.org (default: the --host address, localhost and 127.0.0.1)",
    )
    serve.add_argument(
        "--allowed-origins",
        nargs="+",
        default=[],
        metavar="URL",
        help="other web origins (scheme://host[:port]) whose pages may call the studio with "
        "the user's browser session (default: none; the studio's own origin always may)",
    )
    serve.add_argument(
        "--instance-id",
        default=None,
        metavar="ID",
        help="this front-end's name among those sharing one database, kept across restarts "
        "(default: the machine's name and --port, e.g. box:7860; docs/DEPLOY.md)",
    )
    engine = serve.add_argument_group("engine", "where the model runs (docs/ENGINE.md)")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: in this process (default); ray: a Ray Serve deployment of model replicas "
        "(needs requirements-ray.txt)",
    )
    engine.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="the Ray cluster to join, e.g. ray://head:10001 or head:6379 (default: $RAY_ADDRESS, else a "
        "local Ray instance is started)",
    )
    engine.add_argument("--replicas", type=int, default=1, help="model replicas, a fixed number (default 1)")
    engine.add_argument(
        "--min-replicas", type=int, default=None, help="with --max-replicas: let Ray Serve autoscale"
    )
    engine.add_argument("--max-replicas", type=int, default=None, help="with --min-replicas")
    engine.add_argument(
        "--gpus-per-replica",
        type=float,
        default=None,
        help="GPUs each replica reserves (default 1 when the cluster has GPUs, else 0)",
    )
    engine.add_argument(
        "--cpus-per-replica", type=float, default=1.0, help="CPUs each replica reserves (default 1)"
    )
    serve.set_defaults(handler=serve_command)
    return serve


def serve_command(args: argparse.Namespace) -> int:
    from webapp.auth import is_loopback

    if args.no_auth and not is_loopback(args.host):
        print(
            f"error: refusing to start: --no-auth is only allowed on a loopback host, not {args.host!r}",
            file=sys.stderr,
        )
        return 2
    if args.no_auth and args.allowed_hosts and "*" in args.allowed_hosts:
        print(
            "error: --allowed-hosts '*' is not allowed with --no-auth: any web page could then act as the admin "
            "through a DNS name of its own",
            file=sys.stderr,
        )
        return 2
    if min(args.max_batch or 1, args.max_queue, args.max_user_jobs, args.max_user_images) < 1:
        print(
            "error: --max-batch, --max-queue, --max-user-jobs and --max-user-images must be at least 1",
            file=sys.stderr,
        )
        return 2
    from storage.services.frontends import MAX_FRONTEND_ID

    if args.instance_id is not None and not 0 < len(args.instance_id) <= MAX_FRONTEND_ID:
        print(f"error: --instance-id: 1 to {MAX_FRONTEND_ID} characters", file=sys.stderr)
        return 2
    from model.families import ModelLoadError
    from model.families.loading import pick_device
    from model.families.runtime import check_device_options, pick_dtype
    from model.hub import HubError, resolve_model
    from storage.db import resolve_data_dir

    options = device_options(args)
    try:
        device = pick_device(args.device)
        pick_dtype(device, args.dtype)
        check_device_options(device, options)
    except (ModelLoadError, RuntimeError) as error:  # RuntimeError: torch does not know the --device
        print(f"error: {error}", file=sys.stderr)
        return 2
    data_dir = resolve_data_dir(args.data_dir)
    try:
        model = resolve_model(args.model, data_dir)
    except HubError as error:
        print(f"error: --model: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from storage import open_storage
    from storage.db import resolve_database_url
    from webapp.server import allowed_hosts_for, create_app
    from webapp.services.generation_jobs import default_frontend_id

    with open_storage(data_dir, resolve_database_url()) as storage:
        created = storage.users.ensure_bootstrap_admin()
        if created is not None:
            print(
                f"Created the first account: user 'admin', one-time password: {created.generated_password}\n"
                "Sign in with it; the studio asks for a new password first.",
                flush=True,
            )
        log.info("loading the model from %s", model)
        try:
            engine = start_engine(args, model)
        except ModelLoadError as error:
            print(f"error: --model: {error}", file=sys.stderr)
            return 2
        except (ImportError, ValueError) as error:
            print(f"error: --engine {args.engine}: {error}", file=sys.stderr)
            return 2
        try:
            app = create_app(
                storage,
                engine,
                auth_enabled=not args.no_auth,
                allowed_hosts=args.allowed_hosts or allowed_hosts_for(args.host),
                allowed_origins=args.allowed_origins,
                frontend_id=args.instance_id or default_frontend_id(args.port),
            )
            log.info(
                "data in %s; serving http://%s:%d (auth %s)",
                data_dir,
                args.host,
                args.port,
                "off" if args.no_auth else "on",
            )
            uvicorn.run(app, host=args.host, port=args.port, log_level="info")
        finally:
            engine.shutdown(wait=False)
    return 0


def start_engine(args: argparse.Namespace, model: Path) -> Engine:
    """The engine ``--engine`` names, with the serve command's queue options. Raises ValueError for bad
    engine options and ImportError when ``--engine ray`` finds no Ray Serve installed."""
    options = {
        "max_batch": args.max_batch,
        "max_queue": args.max_queue,
        "max_user_jobs": args.max_user_jobs,
        "max_user_images": args.max_user_images,
    }
    if args.engine == "local":
        from model.engine.engine_local import LocalEngine

        return LocalEngine.from_path(
            model, device=args.device, dtype=args.dtype, options=device_options(args), **options
        )
    try:
        from model.engine.engine_ray import RayEngine
    except ImportError as error:
        raise ImportError(
            f"Ray Serve is not installed ({error}): pip install -r requirements-ray.txt"
        ) from error
    return RayEngine(
        model,
        address=args.ray_address,
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        gpus_per_replica=args.gpus_per_replica,
        cpus_per_replica=args.cpus_per_replica,
        device=args.device,
        dtype=args.dtype,
        device_options=device_options(args),
        **options,
    )
