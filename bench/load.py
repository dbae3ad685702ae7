"""Load benchmark: simulated users drive a live studio through the REST API, then nothing may be lost.

    python bench/load.py [--users 16] [--requests 10] [--steps 4] [--time-limit 900]
                         [--model PATH] [--data-dir D] [--keep]
    python bench/load.py --url http://127.0.0.1:7860 --admin-token TOKEN --data-dir D ...

Without --url it starts `app.py serve` on a free loopback port (a fresh data directory, the embedded
model); with --url it drives a running studio on loopback and reads its --data-dir to verify.
Each user sends its requests one after another, mixing: text generations with varied parameters,
image-guided ones (an upload first), mixes (texts, images, interpolation), cancels, submissions for
review, reviews (reviewer accounts) and searches.

Printed: throughput, p50/p95 latency per request kind and overall, outcomes and errors by kind.
Then it verifies, and exits 1 on any violation:
- every accepted generation reached a final status (succeeded, or cancelled when its cancel was
  accepted), none failed, none is left queued, running or interrupted;
- every succeeded generation has one image row per requested image, each with its file, whose
  SHA-256 matches the row and the bytes the API served;
- nothing is duplicated: no generation row nobody was told about, one review row per accepted
  decision, one upload row per (user, picture);
- `python app.py db check` is clean, and no API token appears in the server's log.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage import open_storage  # noqa: E402
from storage.db import resolve_database_url  # noqa: E402
from storage.models import Generation, Review, Upload, User  # noqa: E402
from storage.models import Image as ImageRow  # noqa: E402
from storage.types import OPERATOR  # noqa: E402

DEFAULT_MODEL = ROOT / "model" / "weights" / "embedded"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white"]
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross"]
SCHEDULERS = [None, "ddpm", "ddim", "dpmpp"]
KINDS = ["text", "guided", "mix", "cancel", "submit", "search", "review"]
FINAL = {"succeeded", "failed", "cancelled", "interrupted"}
POLL_S = 0.2
PASSWORD = "load-bench-password"


# The server under test -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python app.py serve` as a child process on a free loopback port, its output in `log_path`.

    Tests use it too: they kill it (`kill()` is SIGKILL, as a crash), restart it and read its log.
    """

    def __init__(self, data_dir: Path, model: Path, log_path: Path, *extra_args: str) -> None:
        self.data_dir, self.model, self.log_path, self.extra_args = data_dir, model, log_path, extra_args
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        """Start and wait until /api/v1/health answers; raise with the log's tail if it does not.

        A restart reuses the port, so clients keep their URL."""
        self.port = self.port or free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "app.py"),
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--model",
                    str(self.model),
                    "--port",
                    str(self.port),
                    "--device",
                    "cpu",
                    *self.extra_args,
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"the server did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 60) -> None:
        """SIGINT, uvicorn's graceful shutdown; SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# What the simulated users saw ------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    token: str


@dataclass
class Accepted:
    """A generation the API accepted (202), and what its user learned about it afterwards."""

    user: str
    num_images: int
    cancel_status: int | None = None
    final: dict = field(default_factory=dict)


class OutOfTime(Exception):
    """The benchmark's time limit passed."""


class Record:
    """Everything the users observed, shared between their threads."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.accepted: dict[int, Accepted] = {}
        self.served_sha: dict[int, str] = {}
        """image id -> SHA-256 of the bytes GET /images/{id} returned."""
        self.decisions: dict[int, str] = {}
        """image id -> the decision whose POST answered 201."""
        self.upload_ids: set[int] = set()
        self.pending_pool: list[tuple[int, str]] = []
        """(image id, author) submitted for review and not yet taken by a reviewer."""
        self.submits_left = 0
        self.images = 0

    def error(self, label: str) -> None:
        with self.lock:
            self.errors[label] += 1

    def outcome(self, label: str) -> None:
        with self.lock:
            self.outcomes[label] += 1


class ApiFailure(Exception):
    def __init__(self, response: httpx.Response) -> None:
        try:
            kind = response.json().get("error", "")
        except ValueError:
            kind = "not json"
        super().__init__(f"HTTP {response.status_code} {kind}".strip())


def expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise ApiFailure(response)
    return response


def shape_png(rng: random.Random) -> bytes:
    """A coloured shape on a plain ground, like the world the model knows; sizes vary on purpose."""
    size = rng.choice([(64, 64), (48, 40), (96, 80)])
    image = Image.new("RGB", size, rng.choice(COLOURS))
    box = [size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4]
    ImageDraw.Draw(image).ellipse(box, fill=rng.choice(COLOURS))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class SimulatedUser:
    """One person: their requests in order, each timed from first call to final answer."""

    def __init__(
        self, account: Account, url: str, record: Record, kinds: list[str], steps: int, seed: int
    ) -> None:
        self.account, self.record, self.kinds, self.steps = account, record, kinds, steps
        self.rng = random.Random(seed)
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {account.token}"}, timeout=60
        )
        self.own_images: list[int] = []

    def run(self) -> None:
        try:
            for kind in self.kinds:
                if time.monotonic() > self.record.deadline:
                    self.record.error("not run: time limit")
                    continue
                started = time.monotonic()
                try:
                    getattr(self, f"do_{kind}")()
                except OutOfTime:
                    self.record.error("time limit")
                    continue
                except ApiFailure as exc:
                    self.record.error(f"{kind}: {exc}")
                except httpx.HTTPError as exc:
                    self.record.error(f"{kind}: {type(exc).__name__}")
                finally:
                    if kind == "submit":
                        with self.record.lock:
                            self.record.submits_left -= 1
                with self.record.lock:
                    self.record.latencies[kind].append(time.monotonic() - started)
        finally:
            self.client.close()

    # Generations ---------------------------------------------------------------------------------

    def words(self) -> str:
        return f"a {self.rng.choice(COLOURS)} {self.rng.choice(SHAPES)}"

    def params(self) -> dict:
        body: dict = {
            "seed": self.rng.randrange(2**32),
            "steps": self.rng.randint(max(1, self.steps // 2), self.steps),
            "guidance_scale": round(self.rng.uniform(1.0, 8.0), 2),
            "num_images": self.rng.choice([1, 1, 2]),
        }
        scheduler = self.rng.choice(SCHEDULERS)
        if scheduler:
            body["scheduler"] = scheduler
        if self.rng.random() < 0.3:
            body["negative_prompt"] = f"a {self.rng.choice(SHAPES)}"
        return body

    def upload(self) -> int:
        response = expect(
            self.client.post(
                "/api/v1/uploads", files={"file": ("guide.png", shape_png(self.rng), "image/png")}
            ),
            201,
        )
        upload_id = response.json()["id"]
        with self.record.lock:
            self.record.upload_ids.add(upload_id)
        return upload_id

    def submit_generation(self, body: dict) -> int:
        response = expect(self.client.post("/api/v1/generations", json=body), 202)
        generation_id = response.json()["id"]
        with self.record.lock:
            self.record.accepted[generation_id] = Accepted(self.account.name, body.get("num_images", 1))
        return generation_id

    def wait_final(self, generation_id: int) -> dict:
        while True:
            body = expect(self.client.get(f"/api/v1/generations/{generation_id}"), 200).json()
            if body["status"] in FINAL:
                with self.record.lock:
                    self.record.accepted[generation_id].final = body
                return body
            if time.monotonic() > self.record.deadline:
                raise OutOfTime
            time.sleep(POLL_S)

    def generate(self, body: dict) -> dict:
        final = self.wait_final(self.submit_generation(body))
        if final["status"] != "succeeded":
            self.record.error(f"generation {final['status']}: {final.get('error')}")
            return final
        for image in final["images"]:
            served = expect(self.client.get(f"/api/v1/images/{image['id']}"), 200).content
            with self.record.lock:
                self.record.served_sha[image["id"]] = hashlib.sha256(served).hexdigest()
                self.record.images += 1
            self.own_images.append(image["id"])
        return final

    def do_text(self) -> None:
        self.generate({"prompt": self.words(), **self.params()})
        self.record.outcome("text: generated")

    def do_guided(self) -> None:
        body = {
            "prompt": self.words(),
            **self.params(),
            "guidance_image": self.upload(),
            "image_guidance_scale": round(self.rng.uniform(0.05, 0.5), 3),
            "image_guidance_decay": self.rng.choice(["none", "linear", "cosine"]),
        }
        self.generate(body)
        self.record.outcome("guided: generated")

    def do_mix(self) -> None:
        first = {"text": self.words(), "weight": round(self.rng.uniform(0.5, 1.5), 2)}
        second: dict[str, Any] = (
            {"image": self.upload()} if self.rng.random() < 0.5 else {"text": self.words()}
        )
        second["weight"] = round(self.rng.uniform(-1.0, 1.0), 2)
        body: dict[str, Any] = {**self.params(), "mix": [first, second]}
        if self.rng.random() < 0.4:
            body["interpolation"] = round(self.rng.random(), 3)
        else:
            body["prompt"] = self.words()
        self.generate(body)
        self.record.outcome("mix: generated")

    def do_cancel(self) -> None:
        generation_id = self.submit_generation(
            {"prompt": self.words(), **self.params(), "steps": min(150, 3 * self.steps), "num_images": 2}
        )
        time.sleep(self.rng.uniform(0.0, 0.3))
        response = expect(self.client.delete(f"/api/v1/generations/{generation_id}"), 200, 409)
        with self.record.lock:
            self.record.accepted[generation_id].cancel_status = response.status_code
        final = self.wait_final(generation_id)
        self.record.outcome(f"cancel: {'cancelled' if response.status_code == 200 else 'finished first'}")
        if response.status_code == 409 and final["status"] == "succeeded":
            for image in final["images"]:
                served = expect(self.client.get(f"/api/v1/images/{image['id']}"), 200).content
                with self.record.lock:
                    self.record.served_sha[image["id"]] = hashlib.sha256(served).hexdigest()

    # Review --------------------------------------------------------------------------------------

    def do_submit(self) -> None:
        if not self.own_images:
            self.generate({"prompt": self.words(), **self.params()})
        if not self.own_images:
            return
        image_id = self.own_images.pop()
        expect(self.client.post(f"/api/v1/images/{image_id}/submit"), 200)
        with self.record.lock:
            self.record.pending_pool.append((image_id, self.account.name))
        self.record.outcome("submit: submitted")

    def do_review(self) -> None:
        if self.account.role != "reviewer":
            self.do_search()
            return
        while True:
            with self.record.lock:
                mine = next(
                    (entry for entry in self.record.pending_pool if entry[1] != self.account.name), None
                )
                if mine is not None:
                    self.record.pending_pool.remove(mine)
                waiting = mine is None and self.record.submits_left > 0
            if not waiting:
                break
            if time.monotonic() > self.record.deadline:
                raise OutOfTime
            time.sleep(POLL_S)
        if mine is None:
            expect(self.client.get("/api/v1/prompts", params={"status": "pending"}), 200)
            self.record.outcome("review: nothing pending")
            return
        decision = self.rng.choice(["approve", "reject"])
        expect(
            self.client.post(
                f"/api/v1/images/{mine[0]}/reviews", json={"decision": decision, "comment": "load test"}
            ),
            201,
        )
        with self.record.lock:
            self.record.decisions[mine[0]] = decision
        self.record.outcome(
            f"review: {decision.replace('approve', 'approved').replace('reject', 'rejected')}"
        )

    def do_search(self) -> None:
        params = {"q": self.rng.choice(COLOURS + SHAPES)}
        if self.rng.random() < 0.5:
            params["status"] = self.rng.choice(["succeeded", "draft", "approved"])
        expect(self.client.get("/api/v1/prompts", params=params), 200)
        self.record.outcome("search: answered")


# Setting up and checking -----------------------------------------------------------------------


def make_accounts(url: str, admin_token: str, users: int, run_id: str) -> list[Account]:
    """Every fourth user is a reviewer; accounts and tokens are made through the API, as an admin."""
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
    accounts = []
    with admin:
        for index in range(users):
            role = "reviewer" if index % 4 == 3 else "member"
            name = f"load-{run_id}-{index:02d}"
            expect(admin.post("/api/v1/users", json={"name": name, "role": role, "password": PASSWORD}), 201)
            token = expect(admin.post("/api/v1/tokens", json={"user": name, "name": "load"}), 201).json()[
                "token"
            ]
            accounts.append(Account(name, role, token))
    return accounts


def bootstrap_admin(data_dir: Path) -> str:
    """A fresh data directory gets an admin with an API token, made before the server starts."""
    with open_storage(data_dir, resolve_database_url()) as storage:
        admin = storage.users.create(OPERATOR, "load-admin", role="admin", password=PASSWORD).user
        return storage.tokens.create(OPERATOR, admin.id, "load-bench").secret


def plan(users: int, requests: int) -> list[list[str]]:
    """Request kinds per user: consecutive kinds go to consecutive users, so even 4 x 2 covers most."""
    return [[KINDS[(user * requests + n) % len(KINDS)] for n in range(requests)] for user in range(users)]


def file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def verify(data_dir: Path, accounts: list[Account], record: Record) -> list[str]:
    """The promises above, checked against the database and the files; returns the violations."""
    from sqlalchemy import select

    problems: list[str] = []
    with open_storage(data_dir, resolve_database_url()) as storage, storage.db.read() as session:
        user_ids = set(session.scalars(select(User.id).where(User.username.in_([a.name for a in accounts]))))
        rows = {g.id: g for g in session.scalars(select(Generation).where(Generation.user_id.in_(user_ids)))}
        for generation_id in sorted(set(rows) - set(record.accepted)):
            problems.append(
                f"generation {generation_id} is recorded ({rows[generation_id].status}) "
                "but no user was told it was accepted"
            )
        for generation_id, accepted in sorted(record.accepted.items()):
            row = rows.get(generation_id)
            if row is None:
                problems.append(f"accepted generation {generation_id} vanished")
                continue
            images = sorted(row.images, key=lambda image: image.index)
            wanted = "cancelled" if accepted.cancel_status == 200 else "succeeded"
            if row.status != wanted:
                problems.append(
                    f"generation {generation_id} is {row.status}, expected {wanted} ({row.error})"
                )
            if row.status == "succeeded":
                if [image.index for image in images] != list(range(accepted.num_images)):
                    problems.append(
                        f"generation {generation_id} has images {[i.index for i in images]}, "
                        f"expected {accepted.num_images}"
                    )
                for image in images:
                    on_disk = file_sha256(storage.images.path_for(image.sha256))
                    if on_disk != image.sha256 or image.file_missing:
                        problems.append(
                            f"image {image.id}: file {'missing' if on_disk is None else 'differs'}"
                        )
                    if image.id in record.served_sha and record.served_sha[image.id] != image.sha256:
                        problems.append(f"image {image.id}: the API served other bytes than its row names")
            elif images:
                problems.append(
                    f"generation {generation_id} is {row.status} but has {len(images)} image rows"
                )
        reviews: dict[int, list[str]] = defaultdict(list)
        for review in session.scalars(
            select(Review).join(ImageRow).join(Generation).where(Generation.user_id.in_(user_ids))
        ):
            reviews[review.image_id].append(review.decision)
        for image_id in sorted(set(reviews) | set(record.decisions)):
            told = record.decisions.get(image_id)
            if reviews[image_id] != ([told] if told else []):
                problems.append(
                    f"image {image_id}: review rows {reviews[image_id]}, accepted decision {told}"
                )
        uploads = session.execute(
            select(Upload.id, Upload.uploader_id, Upload.sha256).where(Upload.uploader_id.in_(user_ids))
        ).all()
        if len({(u.uploader_id, u.sha256) for u in uploads}) != len(uploads):
            problems.append("an upload is recorded twice for the same user and picture")
        missing = record.upload_ids - {u.id for u in uploads}
        if missing:
            problems.append(f"accepted uploads vanished: {sorted(missing)}")
    check = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "db", "check", "--data-dir", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check.returncode != 0:
        problems.append(f"db check exited {check.returncode}: {check.stdout.strip()} {check.stderr.strip()}")
    return problems


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


def report(record: Record, elapsed: float, users: int, requests: int, steps: int) -> None:
    every = [value for values in record.latencies.values() for value in values]
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    )
    print(
        f"{users} users x {requests} requests, up to {steps} steps: {len(every)} requests in {elapsed:.1f} s"
    )
    print(
        f"throughput: {len(every) / elapsed:.2f} requests/s, {record.images / elapsed:.2f} images/s "
        f"({record.images} images, {len(record.accepted)} generations accepted)"
    )
    print(f"latency, all requests: p50 {percentile(every, 0.5):.2f} s, p95 {percentile(every, 0.95):.2f} s")
    for kind in KINDS:
        values = record.latencies.get(kind, [])
        if values:
            print(
                f"  {kind:7s} n={len(values):3d}  p50 {percentile(values, 0.5):6.2f} s  "
                f"p95 {percentile(values, 0.95):6.2f} s  mean {statistics.fmean(values):6.2f} s"
            )
    print("outcomes: " + (", ".join(f"{k} {v}" for k, v in sorted(record.outcomes.items())) or "none"))
    print("errors by kind: " + (", ".join(f"{k} {v}" for k, v in sorted(record.errors.items())) or "none"))


def run(
    url: str, admin_token: str, data_dir: Path, args: argparse.Namespace, server: ServerProcess | None
) -> int:
    run_id = hashlib.sha256(os.urandom(8)).hexdigest()[:6]
    accounts = make_accounts(url, admin_token, args.users, run_id)
    kinds = plan(args.users, args.requests)
    started = time.monotonic()
    record = Record(deadline=started + args.time_limit)
    record.submits_left = sum(k.count("submit") for k in kinds)
    users = [
        SimulatedUser(account, url, record, kinds[n], args.steps, seed=args.seed * 1000 + n)
        for n, account in enumerate(accounts)
    ]
    threads = [threading.Thread(target=user.run, name=user.account.name) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    report(record, elapsed, args.users, args.requests, args.steps)
    if server is not None:
        server.stop()
    problems = verify(data_dir, accounts, record)
    if server is not None:
        log = server.log_text()
        problems += [f"the server log holds {a.name}'s API token" for a in accounts if a.token in log]
        problems += ["the server log holds the admin's API token"] if admin_token in log else []
        problems += ["the server log holds the accounts' password"] if PASSWORD in log else []
    problems += [f"{count} x {label}" for label, count in sorted(record.errors.items())]
    if problems:
        print(f"FAILED: {len(problems)} violation(s):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(
        f"verified: {len(record.accepted)} accepted generations final, {len(record.served_sha)} images match "
        f"their rows and files, {len(record.decisions)} decisions recorded once, db check clean"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10, help="requests per user")
    parser.add_argument("--steps", type=int, default=4, help="the most denoising steps a request asks for")
    parser.add_argument(
        "--time-limit", type=float, default=900, help="seconds before the run gives up (fails)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", type=Path, help="the data directory (required with --url)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--url", help="a running studio on loopback (default: start one)")
    parser.add_argument("--admin-token", help="an admin's API token for --url")
    args = parser.parse_args(argv)
    if args.users < 1 or args.requests < 1 or args.steps < 1:
        parser.error("--users, --requests and --steps must be at least 1")
    if args.url:
        if not args.admin_token or not args.data_dir:
            parser.error("--url needs --admin-token and --data-dir (to verify the files and run db check)")
        host = httpx.URL(args.url).host
        if host not in ("127.0.0.1", "localhost", "::1"):
            parser.error("--url must be a loopback address: this benchmark is for one's own machine")
        return run(args.url, args.admin_token, args.data_dir, args, None)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="draftroom-load-"))
    admin_token = bootstrap_admin(data_dir)
    server = ServerProcess(data_dir, args.model, data_dir / "server.log")
    server.start()
    try:
        status = run(server.url, admin_token, data_dir, args, server)
    finally:
        server.kill()
    if status or args.keep or args.data_dir:
        print(f"data directory: {data_dir} (server log: {server.log_path})")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
