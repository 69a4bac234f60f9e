"""The gate's HTTP server: git's smart HTTP protocol for the agent, at
`http://gitgate:8080/<remote>[.git]/...`, one remote per manifest entry, nothing else.

Before an advertisement (`info/refs`) and before a push the mirror is refreshed from the
upstream, so a clone, fetch or push starts from the upstream's current state; a push is
checked and pushed upstream by the pre-receive hook while the agent's `git push` waits.
Work per request is bounded: a few requests at a time, a size limit on bodies, timeouts."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer

from . import audit, cgi, config, mirror, upstream
from .text import clean

MAX_CONCURRENT = 8
# Connections at once: one thread each, and a git each. Past them a connection is closed at once
# (the agent opening thousands ran the gate into its pids limit, where git cannot fork).
MAX_CONNECTIONS = 32
MAX_UPLOAD_REQUEST = 16 * 1024 * 1024  # a fetch's wants and haves
READ_TIMEOUT = 60  # seconds one read may wait
BODY_DEADLINE = 300  # seconds a whole request body may take: a byte a minute held a slot for ever
_ROUTE = re.compile(r"^/(?P<name>[a-z0-9][a-z0-9_-]{0,39})(?:\.git)?(?P<rest>/info/refs|/git-upload-pack|"
                    r"/git-receive-pack)$")
_SERVICES = {"git-upload-pack", "git-receive-pack"}
_PROTOCOL = re.compile(r"^version=[0-9]$")
HEALTH_PATH = "/_bottle/health"


CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")  # hex digits only
CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")  # ASCII digits only


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def pkt(line: str) -> bytes:
    data = line.encode()
    return f"{len(data) + 4:04x}".encode() + data


class Handler(BaseHTTPRequestHandler):
    server_version = "bottle-gitgate"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection; a body ends with the connection
    slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    def log_message(self, fmt, *args):  # the audit lines say what matters; keep stderr quiet
        pass

    def setup(self):
        super().setup()
        self.connection.settimeout(READ_TIMEOUT)
        self.deadline = time.monotonic() + BODY_DEADLINE

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    # -- plumbing ------------------------------------------------------------------

    def serve(self, method: str) -> None:
        if self.path == HEALTH_PATH and method == "GET":
            return self.plain(200, "ok\n")
        if not self.slots.acquire(blocking=False):
            return self.plain(503, "the git gate is busy; try again\n")
        try:
            self.route(method)
        except BadRequest as exc:
            self.plain(exc.status, str(exc) + "\n")
        except Exception as exc:  # noqa: BLE001 - fail closed, and say so rather than drop the connection
            traceback.print_exc()  # the gate's stderr (docker logs), never the agent
            self.close_connection = True
            with contextlib.suppress(OSError):  # the answer may have begun: then it ends here
                self.plain(500, f"the git gate failed ({type(exc).__name__}); see its log\n")
        finally:
            self.slots.release()

    def plain(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def git_error(self, service: str, message: str) -> None:
        """An advertisement that is only an error: git prints `fatal: remote error: <message>`."""
        body = pkt(f"# service={service}\n") + b"0000" + pkt(f"ERR {clean(message, 900)}".replace("\n", " "))
        self.send_response(200)
        self.send_header("Content-Type", f"application/x-{service}-advertisement")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def read_body(self, limit: int):
        """The request body in a temp file (chunked or with a length), at most `limit` bytes,
        inflated if it came gzipped (and then at most `limit` bytes inflated too)."""
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise BadRequest(415, f"a request body encoded as {clean(encoding, 40)!r} is not served")
        out = tempfile.TemporaryFile(dir=config.RUN_DIR)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        total = 0
        if chunked:
            while True:
                _in_time(self.deadline)
                line = self.rfile.readline(100)
                field = line.split(b";")[0].strip()
                if not CHUNK_SIZE.fullmatch(field):  # int() would take "-7fff…" (and undo `total`), "0x10", "1_0"
                    raise BadRequest(400, "malformed chunked body")
                size = int(field, 16)
                if size == 0:
                    self.rfile.readline(100)
                    break
                total += size
                if total > limit:
                    raise BadRequest(413, f"the request is larger than {limit >> 20} MiB")
                shutil.copyfileobj(_Exact(self.rfile, size, self.deadline), out)
                self.rfile.readline(100)
        else:
            value = self.headers.get("Content-Length", "0").strip()
            if not CONTENT_LENGTH.fullmatch(value):
                raise BadRequest(400, "bad Content-Length")
            length = int(value)
            if length > limit:
                raise BadRequest(413, f"the request is larger than {limit >> 20} MiB")
            total = length
            shutil.copyfileobj(_Exact(self.rfile, length, self.deadline), out)
        out.seek(0)
        if encoding in ("gzip", "x-gzip"):
            with out:
                return gunzipped(out, limit)
        return out, total

    # -- the protocol ----------------------------------------------------------------

    def route(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        m = _ROUTE.match(path)
        if not m:
            raise BadRequest(404, "the git gate serves /<remote>.git/ of the bottle's remotes only")
        remote = config.remotes().get(m["name"])
        if remote is None:
            raise BadRequest(404, f"no remote named {m['name']} in this bottle's manifest")
        rest = m["rest"]
        if rest == "/info/refs":
            service = query.removeprefix("service=") if query.startswith("service=") else ""
            if method != "GET" or service not in _SERVICES or "&" in query:
                raise BadRequest(403, "only git's smart HTTP protocol is served")
            return self.advertise(remote, service, query)
        if method != "POST":
            raise BadRequest(405, "POST only")
        service = rest[1:]
        if service == "git-upload-pack":
            return self.upload_pack(remote)
        return self.receive_pack(remote)

    def protocol(self) -> str:
        value = self.headers.get("Git-Protocol", "")
        return value if _PROTOCOL.match(value) else ""

    def advertise(self, remote, service: str, query: str) -> None:
        verb = "fetch" if service == "git-upload-pack" else "push"
        with mirror.lock(remote.name):
            changed, failure = refresh_mirror(remote, verb)
        if failure:
            return self.git_error(service, failure)
        if verb == "fetch":
            audit.emit(event="fetch", decision="allow", method="fetch", host=remote.host, path=remote.name,
                       rule="refresh", reason=f"{len(changed)} ref(s) changed upstream", updates=changed)
        self.run_backend(remote, f"/{remote.name}.git/info/refs", query, "GET", None, 0, {})

    def upload_pack(self, remote) -> None:
        body, length = self.read_body(MAX_UPLOAD_REQUEST)
        with body:
            self.run_backend(remote, f"/{remote.name}.git/git-upload-pack", "", "POST", body, length, {})

    def receive_pack(self, remote) -> None:
        limit = remote.push.max_bytes
        try:
            body, length = self.read_body(limit)
        except BadRequest as exc:
            audit.emit(event="push", decision="deny", method="push", host=remote.host, path=remote.name,
                       rule="size" if exc.status == 413 else "protocol", reason=str(exc))
            raise
        verdict_file = tempfile.NamedTemporaryFile(dir=config.RUN_DIR, suffix=".json", delete=False)
        verdict_file.close()
        with body, mirror.lock(remote.name):
            # Refreshed here too, not only at the advertisement: a push may come with none
            # before it (a raw POST), and the policy needs the upstream's default branch as
            # it is now. A failure refuses the push, in the hook, where git prints why.
            _changed, failure = refresh_mirror(remote, "push")
            repo = mirror.ensure(remote)
            default = None if failure else _symbolic_head(repo)
            extra = {"BOTTLE_GATE_REMOTE": remote.name, "BOTTLE_GATE_DEFAULT": default or "",
                     "BOTTLE_GATE_VERDICT": verdict_file.name, "BOTTLE_GATE_REFUSE": failure or "",
                     "GIT_CONFIG_PARAMETERS": f"'receive.maxinputsize'='{limit}'"}
            self.run_backend(remote, f"/{remote.name}.git/git-receive-pack", "", "POST", body, length, extra,
                             cpu_seconds=cgi.PUSH_CPU_SECONDS)
        try:
            with open(verdict_file.name) as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = {"decision": "deny", "rule": "protocol", "reason": "the push ended before the gate judged it"}
        finally:
            with _suppress():
                os.unlink(verdict_file.name)
        audit.emit(event="push", method="push", host=remote.host, path=remote.name, **record)

    def run_backend(self, remote, path_info, query, method, body, length, extra,
                    cpu_seconds: int | None = None) -> None:
        env = cgi.backend_env(remote.name, path_info, query, method,
                              self.headers.get("Content-Type", ""), length, self.protocol(), extra)
        proc = cgi.start(env, body if body is not None else _devnull(), cpu_seconds)
        assert proc.stdout is not None and proc.stderr is not None  # both PIPE
        try:
            status, headers = cgi.read_head(proc.stdout)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            shutil.copyfileobj(proc.stdout, self.wfile, 64 * 1024)
        except (ValueError, OSError) as exc:
            err = proc.stderr.read(4000) if proc.poll() is not None else b""
            print(f"bottle-gitgate: http-backend: {exc}: {clean(err, 2000)}", file=sys.stderr, flush=True)
        finally:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=600)
                except Exception:  # noqa: BLE001
                    proc.kill()
                    proc.wait()
            err = proc.stderr.read(4000)
            if err:
                print(f"bottle-gitgate: http-backend: {clean(err, 2000)}", file=sys.stderr, flush=True)


def gunzipped(body, limit: int):
    """A gzip body inflated into a temp file, at most `limit` bytes of it: (file, size). git
    http-backend would inflate it itself, without any bound: 16 MiB of gzip are 16 GB of
    `have` lines, which upload-pack reads one by one for minutes of CPU."""
    out = tempfile.TemporaryFile(dir=config.RUN_DIR)
    inflater, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    try:
        while not inflater.eof:
            pending = inflater.unconsumed_tail or body.read(64 * 1024)
            if not pending:
                raise BadRequest(400, "the gzip body ended early")
            data = inflater.decompress(pending, 64 * 1024)
            total += len(data)
            if total > limit:
                raise BadRequest(413, f"the request is larger than {limit >> 20} MiB inflated")
            out.write(data)
        if inflater.unused_data or body.read(1):
            raise BadRequest(400, "data after the gzip body")
    except zlib.error:
        out.close()
        raise BadRequest(400, "the body is not gzip") from None
    except BadRequest:
        out.close()
        raise
    out.seek(0)
    return out, total


def _in_time(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise BadRequest(408, f"the request body took longer than {BODY_DEADLINE} s")


class _Exact:
    """A reader of exactly `size` bytes of `stream` (a short stream is an error), by `deadline`."""

    def __init__(self, stream, size: int, deadline: float):
        self.stream, self.left, self.deadline = stream, size, deadline

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        _in_time(self.deadline)
        want = self.left if n < 0 else min(n, self.left)
        data = self.stream.read1(min(want, 64 * 1024))  # one read at most: the deadline is checked between
        if not data:
            raise BadRequest(400, "the request body ended early")
        self.left -= len(data)
        return data


def _devnull():
    return open("/dev/null", "rb")


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def refresh_mirror(remote, verb: str) -> tuple[list[dict], str | None]:
    """(the refs that changed, None), or ([], why the mirror could not be refreshed), audited.
    Caller holds mirror.lock(remote.name)."""
    try:
        return mirror.refresh(remote), None
    except (mirror.RefreshError, OSError, ValueError) as exc:
        reason = f"the upstream {remote.url} could not be reached: {exc}"
    except Exception as exc:  # noqa: BLE001 - fail closed, say what broke
        reason = f"the git gate could not refresh its mirror of {remote.url} ({type(exc).__name__})"
    audit.emit(event=f"{verb}-refresh", decision="deny", method=verb, host=remote.host, path=remote.name,
               rule="upstream", reason=clean(reason, 600))
    return [], clean(reason, 900)


def _symbolic_head(repo: str) -> str | None:
    """The upstream's default branch as the last refresh saw it; None when unknown."""
    result = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=repo, env=upstream.local_env(),
                            capture_output=True, timeout=30)
    head = result.stdout.decode().strip()
    return head if result.returncode == 0 and head.startswith("refs/heads/") else None


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    connections = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        if not self.connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


def main(argv=None) -> int:
    port = 8080
    config.MIRRORS.mkdir(parents=True, exist_ok=True)
    (config.RUN_DIR / "home").mkdir(parents=True, exist_ok=True)
    remotes = config.remotes()  # refuse to start on a bad config file
    audit.emit(event="start", remotes=sorted(remotes))
    Server(("0.0.0.0", port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
