"""A test upstream standing in for real API hosts, with a certificate from the tests' own CA.

* HTTPS on :443 and :8443 answers every request with what it saw, so tests can tell it
  was reached; ``/sse`` streams one event every 0.2 s for 30 s; ``/sse-timed`` three
  events a second apart, recording when each was sent.
* ``POST /v1/messages`` stands in for the Anthropic Messages API: a fixed reply, as one
  JSON message or as server-sent events when the request asks for ``"stream": true``.
* Raw TCP on :9000 reads whatever arrives.

Everything received is recorded on stdout, one JSON object per line (``docker logs``), so
a test checks on the upstream's side what actually arrived, not what the agent was told.
"""
import base64
import hashlib
import http.server
import json
import socket
import ssl
import sys
import threading
import time
import uuid

REPLY = "Hello from the stand-in Messages API."

RECORD_LOCK = threading.Lock()


def record(**fields) -> None:
    with RECORD_LOCK:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


class Echo(http.server.BaseHTTPRequestHandler):
    # Keep-alive as real API hosts do (the default HTTP/1.0 closes after each
    # response); no Nagle, or delayed ACKs cap every client at ~22 requests/s.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _chunked_body(self) -> bytes:
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers, then the end
            pass
        return body

    def _answer(self):
        body = self._body()
        port = self.server.server_address[1]
        record(kind="http", port=port, method=self.command, path=self.path,
               headers=[[name, value] for name, value in self.headers.items()], body_bytes=len(body))
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket(port)
        if self.path.startswith("/sse-timed"):
            return self._sse_timed(port)
        if self.path.startswith("/sse"):
            return self._sse(port)
        if self.command == "POST" and self.path.split("?")[0] == "/v1/messages":
            return self._messages(body)
        if self.path.startswith("/bytes/"):
            return self._bytes(int(self.path.split("/")[2]))
        reply = json.dumps({"upstream": "reached", "method": self.command, "path": self.path,
                            "host": self.headers.get("Host"), "body_bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def _sse(self, port):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        sent = 0
        try:
            for _ in range(150):
                self.wfile.write(f"data: event {sent}\n\n".encode())
                self.wfile.flush()
                sent += 1
                time.sleep(0.2)
        except OSError:
            pass
        record(kind="sse-end", port=port, path=self.path, events=sent)
        self.close_connection = True

    def _bytes(self, size: int):
        """`size` zero bytes, a MiB at a time (the bench's large download)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = bytes(1 << 20)
        while size > 0:
            self.wfile.write(chunk[:size])
            size -= len(chunk)

    def _sse_timed(self, port):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for n in range(3):
            record(kind="sse-sent", port=port, n=n, t=time.time())
            self.wfile.write(f"data: timed {n}\n\n".encode())
            self.wfile.flush()
            time.sleep(1.0)
        self.close_connection = True

    def _messages(self, body: bytes):
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        model = request.get("model", "claude-stand-in")
        message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                   "model": model, "content": [{"type": "text", "text": REPLY}],
                   "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 8}}
        if not request.get("stream"):
            data = json.dumps(message).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": REPLY}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 8}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for name, data in events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_PUT = _answer

    def _websocket(self, port):
        """RFC 6455, just enough: the handshake, then echo each text message until a close."""
        accept = base64.b64encode(hashlib.sha1(self.headers["Sec-WebSocket-Key"].encode()
                                               + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                break
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self.rfile.read(2), "big")
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 0x8:  # close
                self.wfile.write(b"\x88\x00")
                break
            record(kind="ws", port=port, path=self.path, text=data.decode(errors="replace"))
            self.wfile.write(bytes([0x81, len(data)]) + data)  # echo, unmasked, short messages only
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def https(port: int) -> None:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Echo)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain("/upstream/cert.pem", "/upstream/key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def raw(port: int) -> None:
    listener = socket.create_server(("0.0.0.0", port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=raw_connection, args=(conn, port), daemon=True).start()


def raw_connection(conn: socket.socket, port: int) -> None:
    received = b""
    with conn:
        try:
            while data := conn.recv(65536):
                received += data
        except OSError:
            pass
    record(kind="raw", port=port, bytes=len(received), head=received[:64].hex())


for target, port in ((https, 8443), (raw, 9000)):
    threading.Thread(target=target, args=(port,), daemon=True).start()
https(443)
