"""The credential an upstream reflects never reaches the agent.

A routed host's upstream may echo the request's headers back: in a response header, the
reason phrase, a redirect's Location, a Set-Cookie, the body (whole, split across streamed
chunks, compressed, or a byte range of it at a time), a WebSocket message. The
egress proxy injected the real credential into that request; the agent must still only
ever see its placeholder. Each test checks both sides: the stand-in upstream recorded the
real key (the injection happened), and what curl inside the agent received holds none of it.
"""
from __future__ import annotations

import base64
import json
import secrets
import shlex
import shutil
import string
import subprocess
import time
from pathlib import Path

import pytest
from helpers import docker
from test_bottle_e2e import UPSTREAM, module_bottle

from bottle_tasks import pki
from bottle_tasks.sidecars.egress.scrub import mask

pytestmark = pytest.mark.usefixtures("engine")

REFLECT = "reflect.upstream.test"
WS_CLIENT = Path(__file__).resolve().parent / "ws_client.py"
# Not shaped like any DLP pattern: only the egress proxy's own scrub stands between a
# reflected copy and the agent.
REAL_TOKEN = "rfl" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(45))

BODY = f"""    prompt: egress reflection test bottle
    secrets: [REFLECT_TOKEN]
    resources: {{memory: 1g, cpus: 1, pids: 256}}
    network:
      allow: [{REFLECT}, {UPSTREAM}]
      allowed_cidrs: []
    egress_proxy:
      routes:
        - host: {REFLECT}
          paths: [/r/]
          inject: [{{header: authorization, secret: REFLECT_TOKEN, format: "Bearer {{secret}}"}}]
"""

# The reflecting upstream, run with the firewall image's python3 (the bottle's own image:
# nothing to build). It records what it received (stdout) and echoes the Authorization
# header back in the way the path names.
REFLECTOR = r'''
import base64, gzip, hashlib, http.server, json, os, ssl, sys, threading, time

def record(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()

class Reflect(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        seen = self.headers.get("Authorization", "")
        record(kind="http", path=self.path, headers=[[k, v] for k, v in self.headers.items()])
        how = self.path.split("?")[0].rsplit("/", 1)[-1]  # /r/HOW[?anything]
        body = json.dumps({"reflected": seen, "headers": dict(self.headers.items())}).encode()
        if how == "ws":
            return self.websocket(seen)
        if how == "ws-later":  # the echo only once the test says so (it reloads the egress proxy first)
            return self.websocket(seen, after="/tmp/go")
        if how == "ws-sink":
            return self.sink()
        if how == "split":
            return self.chunked([b"data: " + seen[:20].encode(), seen[20:].encode() + b"\n\n"])
        if how == "tail":  # a line, then bytes the agent chose (hex in the query), a pause, the end
            tail = bytes.fromhex(self.path.split("?", 1)[1])
            return self.chunked([b"x" * 100 + b"\n" + tail, b"end\n"], pause=1.5)
        if how in ("ws-close", "ws-ping"):
            return self.websocket_control(how, seen)
        if how == "te-gzip":  # the body in a gzip transfer coding, whether asked for it or not
            return self.gzip_transfer_coded(body)
        if how == "upgrade-raw":  # switches to another protocol than WebSocket, then echoes raw
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "foo")
            self.end_headers()
            self.wfile.write(("raw " + seen + "\n").encode())
            self.wfile.flush()
            time.sleep(2)
            self.close_connection = True
            return
        if how == "gzip-always":
            return self.send(200, gzip.compress(body), [("Content-Encoding", "gzip")])
        if how == "gzip-empty":
            return self.send(200, b"", [("Content-Encoding", "gzip"), ("X-Echo", seen)])
        if how == "gzip-if-asked":
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                return self.send(200, gzip.compress(body), [("Content-Encoding", "gzip")])
            return self.send(200, body)
        if how == "range":
            first, last = self.headers.get("Range", "bytes=0-").split("=")[1].split("-")
            part = body[int(first):int(last) + 1 if last else None]
            return self.send(206 if "Range" in self.headers else 200, part, [("Accept-Ranges", "bytes")])
        extra = {"header": [("X-Echo", seen)], "location": [("Location", "https://x.test/?k=" + seen)],
                 "cookie": [("Set-Cookie", "k=" + seen.replace(" ", "_"))],
                 "base64": [("X-Echo", base64.b64encode(seen.encode()).decode())],
                 "base64url": [("X-Echo", base64.urlsafe_b64encode(seen.encode()).decode())],
                 "hex": [("X-Echo", seen.encode().hex())]}.get(how, [])
        reason = "Echo " + seen if how == "reason" else None
        self.send(200, body if how == "body" else b"nothing in the body\n", extra, reason)

    def send(self, status, body, extra=(), reason=None):
        self.send_response(status, reason)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunked(self, parts, pause=0.3):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
            time.sleep(pause)  # a chunk of its own on every hop: the token is split across two
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def gzip_transfer_coded(self, body):
        data = gzip.compress(body)
        self.send_response(200)
        self.send_header("Transfer-Encoding", "gzip, chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        self.close_connection = True

    def websocket_control(self, how, seen):
        """A control frame that echoes the credential: a close's reason, or a ping's payload."""
        self.handshake()
        if how == "ws-close":
            data = (1000).to_bytes(2, "big") + ("bye " + seen).encode()
            self.wfile.write(bytes([0x88, len(data)]) + data)
        else:
            self.wfile.write(bytes([0x89, len(seen)]) + seen.encode())
        self.wfile.flush()
        self.rfile.read(2)  # the client's close, or its end
        self.close_connection = True

    def websocket(self, seen, after=None):
        self.handshake()
        deadline = time.monotonic() + 60
        while after and not os.path.exists(after) and time.monotonic() < deadline:
            time.sleep(0.1)
        data = ("you sent " + seen).encode()
        self.wfile.write(bytes([0x81, len(data)]) + data)
        self.wfile.flush()
        self.rfile.read(2)  # the client's close
        self.close_connection = True

    def handshake(self):
        accept = base64.b64encode(hashlib.sha1(self.headers["Sec-WebSocket-Key"].encode()
                                               + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()

    def sink(self):
        """Count binary messages' bytes; a text message is answered with the count."""
        self.handshake()
        total = 0
        while True:
            head = self.rfile.read(2)
            if len(head) < 2 or head[0] & 0x0F == 0x8:
                break
            length = head[1] & 0x7F
            if length >= 126:
                length = int.from_bytes(self.rfile.read(2 if length == 126 else 8), "big")
            self.rfile.read(4)  # the mask: the client sends zeros
            data = self.rfile.read(length)
            if head[0] & 0x0F == 0x2:
                total += len(data)
                continue
            record(kind="ws-sink", path=self.path, bytes=total)
            reply = f"got {total}".encode()
            self.wfile.write(bytes([0x81, len(reply)]) + reply)
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Reflect)
server.daemon_threads = True
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/upstream/cert.pem", "/upstream/key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
record(kind="ready", path="")
server.serve_forever()
'''

# Both run in the agent beside ws_client.py, whose handshake they use.
# The first message the server sends, after the handshake's head.
WS_READ = r'''
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ws_client import handshake
conn, head = handshake(*sys.argv[1:3])
frame = conn.recv(2)
message = b""
while len(message) < frame[1] & 0x7F:
    message += conn.recv(1)
conn.sendall(bytes([0x88, 0x80]) + os.urandom(4))
print(head.decode(errors="replace") + message.decode(errors="replace"))
'''

# Reads a streamed answer through the agent's proxy; prints how many bytes came before the
# upstream's pause (within 0.75 s of the first) and how many in all.
TAIL_READ = r'''
import http.client, os, ssl, sys, time, urllib.parse
proxy = urllib.parse.urlsplit(os.environ.get("HTTPS_PROXY") or os.environ["https_proxy"])
conn = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=ssl.create_default_context(), timeout=20)
conn.set_tunnel(sys.argv[1], 443)
conn.request("GET", sys.argv[2])
response = conn.getresponse()
first, early, total = None, 0, 0
while data := response.read1(65536):
    now = time.monotonic()
    first = first or now
    total += len(data)
    early += len(data) if now - first < 0.75 else 0
print(early, total)
'''

# Asks HOST PATH, through the agent's proxy, to switch to protocol "foo"; prints all it gets.
RAW_UPGRADE = r'''
import os, ssl, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ws_client import tunnel
host, path = sys.argv[1], sys.argv[2]
conn = tunnel(host)
conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n".encode())
got = b""
try:
    while data := conn.recv(65536):
        got += data
except (OSError, ssl.SSLError) as e:
    got += f"[{type(e).__name__}]".encode()
print(got.decode(errors="replace"))
'''

# Floods a WebSocket with MESSAGES binary messages of 64 KiB, asks the sink for its count,
# prints the answer, then holds the connection open (it is killed by its pid).
WS_FLOOD = r'''
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ws_client import handshake
conn, _head = handshake(*sys.argv[1:3])
messages = int(sys.argv[3])
frame = bytes([0x82, 0xFE, 0xFF, 0xFF, 0, 0, 0, 0]) + bytes(0xFFFF)  # a zero mask: sent as it is
for _ in range(messages):
    conn.sendall(frame)
conn.sendall(bytes([0x81, 0x84, 0, 0, 0, 0]) + b"done")
answer = conn.recv(2)
print(conn.recv(answer[1] & 0x7F).decode(), flush=True)
time.sleep(300)
'''


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    yield from module_bottle(tmp_path_factory, test_ca, trust_bundle, prefix="rfl", body=BODY,
                             env={"REFLECT_TOKEN": REAL_TOKEN}, aliases=(UPSTREAM,))


@pytest.fixture(scope="module")
def reflector(bottle, test_ca, tmp_path_factory):
    """The reflecting upstream on the bottle's egress network, as REFLECT; removed afterwards."""
    files = tmp_path_factory.mktemp("reflector")
    files.chmod(0o755)  # the server runs as the image's user
    leaf = pki.mint_leaf(test_ca, [REFLECT])
    (files / "cert.pem").write_bytes(leaf.cert_pem)
    (files / "key.pem").write_bytes(leaf.key_pem)
    (files / "reflect.py").write_text(REFLECTOR)
    (files / "ws_read.py").write_text(WS_READ)
    (files / "tail_read.py").write_text(TAIL_READ)
    (files / "raw_upgrade.py").write_text(RAW_UPGRADE)
    (files / "ws_flood.py").write_text(WS_FLOOD)
    shutil.copy(WS_CLIENT, files / "ws_client.py")
    for file in files.iterdir():
        file.chmod(0o644)  # read by the server as another uid; the agent's copy by the agent
    for script in ("ws_read.py", "ws_flood.py", "ws_client.py", "tail_read.py", "raw_upgrade.py"):
        docker("cp", str(files / script), f"bottle-{bottle.slug}-agent:/tmp/{script}")
    image = json.loads(docker("inspect", f"bottle-{bottle.slug}-firewall").stdout)[0]["Config"]["Image"]
    name = f"bottle-test-{bottle.slug}-reflector"  # removed below whatever happens
    try:
        docker("run", "-d", "--init", "--name", name, "--label", "bottle.test=1",
               "--network", f"bottle-{bottle.slug}-net-egress", "--network-alias", REFLECT,
               "-v", f"{files}:/upstream:ro", "--entrypoint", "python3", image, "/upstream/reflect.py")
        for _ in range(100):  # it listens before it says so
            if '"ready"' in docker("logs", name).stdout:
                break
            time.sleep(0.1)
        else:
            logs = docker("logs", name)
            raise AssertionError(f"the reflector did not start: {logs.stdout}{logs.stderr}")
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def reflected(reflector, path: str) -> list[dict]:
    """What the reflector received on `path`: that the real token did arrive there."""
    lines = docker("logs", reflector).stdout.splitlines()
    return [r for r in map(json.loads, (x for x in lines if x.startswith("{"))) if r["path"] == path]


def agent_received(bottle, path: str, *curl_args: str) -> str:
    """All curl inside the agent received for `path` (HTTP/1.1 unless told): status line,
    headers, body; not the proxy's answer to its CONNECT."""
    args = " ".join(shlex.quote(a) for a in ("--http1.1", *curl_args))
    out = bottle.sh(f"curl -sS --max-time 20 -D - {args} https://{REFLECT}{path}")
    return out.stdout.removeprefix("HTTP/1.1 200 Connection established\n\n") + out.stderr


def assert_token_arrived(reflector, path: str, received: str) -> dict:
    found = reflected(reflector, path)
    assert len(found) == 1, (found, received)
    [seen] = found
    assert carries_the_token(seen), seen
    return seen


def carries_the_token(record: dict) -> bool:
    return [f"Bearer {REAL_TOKEN}"] == [v for k, v in record["headers"] if k.lower() == "authorization"]


@pytest.mark.parametrize("how, version", [
    *((how, "--http1.1") for how in ("header", "reason", "location", "cookie", "body", "split")),
    *((how, "--http2") for how in ("header", "body", "split"))])
def test_a_reflected_token_is_scrubbed_from_what_the_agent_receives(bottle, reflector, how, version):
    path = f"/r/{how}?{version}"
    received = agent_received(bottle, path, version)
    assert_token_arrived(reflector, path, received)
    assert REAL_TOKEN not in received, received
    assert REAL_TOKEN[:20] not in received and REAL_TOKEN[20:] not in received, received  # nor its halves
    assert received.startswith(("HTTP/1.1 200", "HTTP/2 200")), received  # answered, not refused


@pytest.mark.parametrize("how, decode", [("base64", base64.b64decode), ("base64url", base64.urlsafe_b64decode),
                                         ("hex", bytes.fromhex)])
def test_a_token_reflected_encoded_whole_is_scrubbed(bottle, reflector, how, decode):
    # "Bearer <token>" echoed in an encoding: the token sits at an offset inside it
    path = f"/r/{how}"
    received = agent_received(bottle, path)
    assert_token_arrived(reflector, path, received)
    [echo] = [line.split(":", 1)[1].strip() for line in received.splitlines() if line.lower().startswith("x-echo:")]
    assert "BOTTLE-REDACTED" in echo, received
    readable = echo.replace("BOTTLE-REDACTED-", "A" * 16).replace("*", "A")
    text = decode(readable.lower() if how == "hex" else readable)
    assert text.startswith(b"Bearer ") and REAL_TOKEN.encode() not in text, text
    assert REAL_TOKEN[:20].encode() not in text and REAL_TOKEN[-20:].encode() not in text, text


def test_a_reflected_token_is_masked_in_place(bottle, reflector):
    received = agent_received(bottle, "/r/body")
    answer = json.loads(received.split("\n\n", 1)[1])
    assert answer["reflected"] == "Bearer " + mask(len(REAL_TOKEN)).decode()  # the same length: framing holds


def test_routed_requests_ask_for_no_content_coding(bottle, reflector):
    received = agent_received(bottle, "/r/gzip-if-asked", "--compressed")
    seen = assert_token_arrived(reflector, "/r/gzip-if-asked", received)
    assert [v for k, v in seen["headers"] if k.lower() == "accept-encoding"] == ["identity"], seen
    assert REAL_TOKEN not in received and '"reflected": "Bearer ' in received, received


@pytest.mark.parametrize("how", ["gzip-always", "gzip-empty"])
def test_a_compressed_answer_is_refused(bottle, reflector, how):
    received = agent_received(bottle, f"/r/{how}", "--compressed")
    assert_token_arrived(reflector, f"/r/{how}", received)
    assert REAL_TOKEN not in received, received
    assert received.startswith("HTTP/1.1 502") and "content-coding" in received, received
    assert "curl:" not in received, received  # a whole answer, as announced
    raw = bottle.sh(f"curl -sS --max-time 20 https://{REFLECT}/r/{how} | base64 -w0").stdout
    assert REAL_TOKEN.encode() not in base64.b64decode(raw)  # nor compressed: it is no gzip at all
    assert not base64.b64decode(raw).startswith(b"\x1f\x8b")


def test_byte_ranges_cannot_take_the_token_out_piece_by_piece(bottle, reflector):
    # 16 bytes at a time: no one answer holds the whole token, so none would be scrubbed
    pieces = [agent_received(bottle, "/r/range", "-r", f"{start}-{start + 15}") for start in range(0, 512, 16)]
    seen = reflected(reflector, "/r/range")
    assert seen and all(map(carries_the_token, seen))
    assert not [r for r in seen if any(k.lower() in ("range", "if-range") for k, _ in r["headers"])], seen
    joined = "".join(p.split("\n\n", 1)[1] for p in pieces)
    assert REAL_TOKEN not in joined, joined


def test_a_websocket_message_reflecting_the_token_is_scrubbed(bottle, reflector):
    out = bottle.sh(f"python3 /tmp/ws_read.py {REFLECT} /r/ws")
    assert_token_arrived(reflector, "/r/ws", out.stdout + out.stderr)
    assert "101" in out.stdout and "you sent Bearer " in out.stdout, out.stdout + out.stderr
    assert REAL_TOKEN not in out.stdout + out.stderr


@pytest.mark.parametrize("how", ["ws-close", "ws-ping"])
def test_a_websocket_control_frame_reflecting_the_token_is_scrubbed(bottle, reflector, how):
    out = bottle.sh(f"python3 /tmp/ws_read.py {REFLECT} /r/{how}")
    assert_token_arrived(reflector, f"/r/{how}", out.stdout + out.stderr)
    assert "101" in out.stdout and "Bearer BOTTLE-REDACTED-" in out.stdout, out.stdout + out.stderr
    assert REAL_TOKEN not in out.stdout + out.stderr and REAL_TOKEN[:20] not in out.stdout


def test_where_a_streamed_answer_is_cut_does_not_tell_the_agent_the_token(bottle, reflector):
    """The upstream streams a line, then bytes the agent chose, then pauses. Whether those bytes
    begin the token or not, the agent gets them at the same moment: after the pause."""
    cuts = {}
    for tail in (REAL_TOKEN[:12], "z" * 12):
        path = f"/r/tail?{tail.encode().hex()}"
        out = bottle.sh(f"python3 /tmp/tail_read.py {REFLECT} '{path}'")
        assert_token_arrived(reflector, path, out.stdout + out.stderr)
        cuts[tail] = tuple(map(int, out.stdout.split()))
    assert cuts[REAL_TOKEN[:12]] == cuts["z" * 12] == (101, 101 + 12 + 4), cuts  # the line at once, the rest later


def test_a_transfer_coded_answer_is_refused_and_none_is_asked_for(bottle, reflector):
    received = agent_received(bottle, "/r/te-gzip", "-H", "TE: gzip, trailers")
    seen = assert_token_arrived(reflector, "/r/te-gzip", received)
    assert [v for k, v in seen["headers"] if k.lower() == "te"] == ["trailers"], seen  # gzip was not asked for
    assert received.startswith("HTTP/1.1 502") and "content-coding" in received, received
    assert REAL_TOKEN not in received


def egress_reloaded(bottle, secrets_text: str) -> None:
    """The egress proxy's secrets file rewritten in place (its owner and mode kept: the proxy
    reads it as its own user), and its reload waited for."""
    sidecar_reloaded(bottle, "egress", "secrets.json", secrets_text, "routes-reload")


def sidecar_reloaded(bottle, role: str, name: str, text: str, event: str) -> None:
    """Write a sidecar's stage file `name` as the controller would, SIGHUP it, wait for its `event` line."""
    container = f"bottle-{bottle.slug}-{role}"
    path = bottle.state_home / "bottle" / bottle.slug / "stage" / role / name
    before = docker("logs", container).stdout.count(f'"{event}"')
    path.write_text(text)
    docker("kill", "--signal", "HUP", container)
    deadline = time.monotonic() + 20
    while docker("logs", container).stdout.count(f'"{event}"') == before:
        assert time.monotonic() < deadline, f"{container} did not reload"
        time.sleep(0.2)


def test_a_websocket_opened_before_a_reload_is_scrubbed_for_the_secret_it_was_given(bottle, reflector):
    """A reload (`inv route rm`, a new secret) replaces the egress proxy's scrubber. A WebSocket
    opened before it carried the old secret in its handshake; echoed after the reload, it was
    scrubbed with the new scrubber, which no longer knew that secret, and reached the agent."""
    path = bottle.state_home / "bottle" / bottle.slug / "stage" / "egress" / "secrets.json"
    original = path.read_text()
    assert REAL_TOKEN in original
    reader = subprocess.Popen(["docker", "exec", f"bottle-{bottle.slug}-agent", "python3", "/tmp/ws_read.py",
                               REFLECT, "/r/ws-later"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not reflected(reflector, "/r/ws-later"):
            assert time.monotonic() < deadline and reader.poll() is None, "the WebSocket did not reach the upstream"
            time.sleep(0.2)
        egress_reloaded(bottle, original.replace(REAL_TOKEN, "rotated" + "x" * 40))
        docker("exec", reflector, "touch", "/tmp/go")
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
        egress_reloaded(bottle, original)
        docker("exec", reflector, "rm", "-f", "/tmp/go", check=False)
    assert_token_arrived(reflector, "/r/ws-later", out + err)
    assert "101" in out and "you sent Bearer " in out, out + err
    assert REAL_TOKEN not in out + err


def firewall_reloaded(bottle, policy: dict) -> None:
    """Write the firewall's policy file as the controller would, and wait for its reload."""
    sidecar_reloaded(bottle, "firewall", "policy.json", json.dumps(policy), "policy-reload")


def test_a_routed_switch_to_raw_bytes_is_cut_even_where_the_firewall_would_relay_it(bottle, reflector):
    """A routed host the firewall treats as passthrough (the manifest and `inv route add` refuse
    that; the firewall's policy is edited here as a later path might) lets a 101 to another
    protocol than WebSocket through: the egress proxy must not relay what follows unscrubbed."""
    path = bottle.state_home / "bottle" / bottle.slug / "stage" / "firewall" / "policy.json"
    policy = json.loads(path.read_text())
    firewall_reloaded(bottle, {**policy, "passthrough": [*policy.get("passthrough", []), REFLECT]})
    try:
        out = bottle.sh(f"python3 /tmp/raw_upgrade.py {REFLECT} /r/upgrade-raw")
    finally:
        firewall_reloaded(bottle, policy)
    assert_token_arrived(reflector, "/r/upgrade-raw", out.stdout + out.stderr)
    assert REAL_TOKEN not in out.stdout + out.stderr and "raw Bearer" not in out.stdout, out.stdout
    assert "101" not in out.stdout.split("\n", 1)[0], out.stdout  # the switch itself never reached the agent
    denials = [json.loads(line) for line in docker("logs", f"bottle-{bottle.slug}-egress").stdout.splitlines()
               if '"raw-upgrade"' in line]
    assert denials and denials[-1]["decision"] == "deny", denials


def memory_of(container: str) -> int:
    """Bytes resident in the container's processes (the egress proxy's python, its init)."""
    status = docker("exec", container, "sh", "-c", "cat /proc/[0-9]*/status").stdout
    return sum(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))


def test_a_long_websocket_does_not_pile_up_in_the_egress_proxy(bottle, reflector):
    """mitmproxy keeps each WebSocket message in its flow until the connection closes: a
    routed WebSocket held open would grow the egress proxy by all it ever relayed."""
    egress, messages = f"bottle-{bottle.slug}-egress", 3072  # 192 MiB
    before = memory_of(egress)
    pid = bottle.sh(f"python3 /tmp/ws_flood.py {REFLECT} /r/ws-sink {messages} >/tmp/flood.out 2>&1 & echo $!"
                    ).stdout.strip()
    try:
        for _ in range(600):  # until the sink has counted it all (the connection stays open)
            if bottle.sh("cat /tmp/flood.out").stdout.strip():
                break
            time.sleep(0.5)
        assert bottle.sh("cat /tmp/flood.out").stdout.strip() == f"got {messages * 0xFFFF}"
        [counted] = [r for r in map(json.loads, (x for x in docker("logs", reflector).stdout.splitlines()
                                                   if x.startswith("{"))) if r["kind"] == "ws-sink"]
        assert counted["bytes"] == messages * 0xFFFF  # it all arrived
        grown = memory_of(egress) - before
        assert grown < 64 * 2**20, f"the egress proxy grew by {grown >> 20} MiB"
    finally:
        bottle.sh(f"kill {int(pid)}")
