"""A test upstream: HTTPS on :8443 with a certificate from the tests' own CA.
Answers every request with what it saw, so tests can tell it was reached."""
import http.server
import json
import ssl


class Echo(http.server.BaseHTTPRequestHandler):
    # Keep-alive as real API hosts do (the default HTTP/1.0 closes after each
    # response); no Nagle, or delayed ACKs cap every client at ~22 requests/s.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = json.dumps({"upstream": "reached", "method": self.command, "path": self.path,
                            "host": self.headers.get("Host"), "body_bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), Echo)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/upstream/cert.pem", "/upstream/key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
