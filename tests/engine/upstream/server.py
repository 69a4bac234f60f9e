"""A test upstream standing in for real API hosts, with a certificate from the tests' own CA.

* HTTPS on :443 and :8443 answers every request with what it saw, so tests can tell it
  was reached; ``/sse`` streams one event every 0.2 s for 30 s.
* Raw TCP on :9000 reads whatever arrives.

Everything received is recorded on stdout, one JSON object per line (``docker logs``), so
a test checks on the upstream's side what actually arrived, not what the agent was told.
"""
import http.server
import json
import socket
import ssl
import sys
import threading
import time

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

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        port = self.server.server_address[1]
        record(kind="http", port=port, method=self.command, path=self.path,
               headers=dict(self.headers.items()), body_bytes=len(body))
        if self.path.startswith("/sse"):
            return self._sse(port)
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

    do_GET = do_POST = do_PUT = _answer

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
