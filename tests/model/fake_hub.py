"""A small local Hugging Face Hub for the `models pull` tests: serves repos from folders on disk through the
endpoints huggingface_hub calls, so a test points HF_ENDPOINT at it instead of the network.

- ``GET /api/models/{repo}[/revision/{rev}]``: id, commit sha and the siblings list;
- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: the file entries snapshot_download filters;
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file with X-Repo-Commit, ETag and Content-Length, honouring
  ``Range: bytes=N-`` (206) so a cut download resumes. ``cuts["repo/path"] = n`` hangs up on the next n GETs of
  that file: a fresh GET after half the body, a resuming (ranged) one before any byte.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-$")


class FakeHub:
    """Repos (``repo_id -> folder``) served at ``self.endpoint``; ``self.requests`` logs (method, path, Range)."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {
            repo: {
                f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()
            }
            for repo, root in repos.items()
        }
        self.commits = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in repos}
        self.cuts: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.endpoint = ""

    def fetched(self, repo: str) -> set[str]:
        """The files of ``repo`` that were downloaded (GET on resolve)."""
        prefix = f"/{repo}/resolve/"
        return {
            path.split("/", 1)[1]
            for method, url, _ in self.requests
            if method == "GET"
            for path in [url.removeprefix(prefix)]
            if url.startswith(prefix)
        }

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, *, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append((self.command, path, self.headers.get("Range")))
                if api := _API.match(path):
                    self._api(api["repo"], api["kind"])
                elif resolve := _RESOLVE.match(path):
                    self._file(resolve["repo"], resolve["path"], body=body)
                else:
                    self._reply(404, b"{}", {"X-Error-Code": "EntryNotFound"})

            def _api(self, repo: str, kind: str | None) -> None:
                files = hub.repos.get(repo)
                if files is None:
                    self._reply(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                    return
                if kind == "tree":
                    data: object = [
                        {"type": "file", "path": p, "size": len(b), "oid": _git_sha1(b)}
                        for p, b in files.items()
                    ]
                else:
                    data = {
                        "id": repo,
                        "modelId": repo,
                        "sha": hub.commits[repo],
                        "private": False,
                        "siblings": [{"rfilename": p} for p in files],
                    }
                self._reply(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _file(self, repo: str, file: str, *, body: bool) -> None:
                content = hub.repos.get(repo, {}).get(file)
                if content is None:
                    self._reply(404, b"{}", {"X-Error-Code": "EntryNotFound"})
                    return
                start = int(ranged[1]) if (ranged := _RANGE.match(self.headers.get("Range", ""))) else 0
                headers = {
                    "X-Repo-Commit": hub.commits[repo],
                    "ETag": f'"{_git_sha1(content)}"',
                    "Accept-Ranges": "bytes",
                }
                if start:
                    headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
                part = content[start:]
                if not body:
                    self._reply(
                        206 if start else 200,
                        b"",
                        {**headers, "Content-Length": str(len(part))},
                        send_body=False,
                    )
                    return
                key = f"{repo}/{file}"
                if hub.cuts.get(key, 0) > 0:
                    hub.cuts[key] -= 1
                    self.send_response(206 if start else 200)
                    for name, value in {**headers, "Content-Length": str(len(part))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(b"" if start else part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True  # hang up before the promised body is all sent
                    return
                self._reply(206 if start else 200, part, headers)

            def _reply(
                self, status: int, data: bytes, headers: dict[str, str], *, send_body: bool = True
            ) -> None:
                self.send_response(status)
                headers.setdefault("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeHub]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def _git_sha1(data: bytes) -> str:
    """The blob id git (and the Hub) gives a file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
