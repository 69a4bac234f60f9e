"""A stand-in git host for the git gate's tests: git's smart HTTP protocol (git
http-backend) over TLS with a certificate from the tests' CA, on :443, demanding the token
by basic auth. One repository, org/repo.git, whose default branch is main.

Every request is recorded on stdout, one JSON object per line (``docker logs``), with
whether it carried the right token, so a test checks on the upstream's side what arrived.
Runs as `python3 git_server.py TOKEN_FILE` in an image with git (the gate's own)."""
import base64
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading

ROOT = "/tmp/upstream"
REPO = f"{ROOT}/org/repo.git"
LOCK = threading.Lock()
TOKEN = open(sys.argv[1]).read().strip()


def record(**fields) -> None:
    with LOCK:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def git(*args, cwd=None):
    env = {"PATH": "/usr/bin:/bin", "HOME": ROOT, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "upstream", "GIT_AUTHOR_EMAIL": "up@example.test",
           "GIT_COMMITTER_NAME": "upstream", "GIT_COMMITTER_EMAIL": "up@example.test"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def seed() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(REPO)
    git("init", "--bare", "--initial-branch=main", REPO)
    work = f"{ROOT}/seed"
    git("init", "--initial-branch=main", work)
    with open(f"{work}/README.md", "w") as f:
        f.write("upstream repository\n")
    git("add", "README.md", cwd=work)
    git("commit", "-m", "initial commit", cwd=work)
    git("push", REPO, "main:main", cwd=work)
    git("config", "http.receivepack", "true", cwd=REPO)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def authorized(self) -> bool:
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return password == TOKEN

    def handle_any(self, method: str):
        ok = self.authorized()
        record(method=method, path=self.path, authorized=ok, proxy_auth=bool(self.headers.get("Proxy-Authorization")))
        if not ok:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="upstream"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else self._chunked()
        env = {"PATH": "/usr/bin:/bin", "GIT_PROJECT_ROOT": ROOT, "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": method, "REMOTE_USER": "tester",
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "HOME": ROOT}
        if self.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        # A length, not the end of the connection: Python's TLS socket closes without close_notify.
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    def _chunked(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", ""):
            return b""
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if not size:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    seed()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain("/upstream/cert.pem", "/upstream/key.pem")
    server = Server(("0.0.0.0", 443), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    record(event="ready")
    server.serve_forever()
