"""A test upstream that serves the files under /upstream/www over HTTPS on :443, with a
certificate from the tests' own CA: a bare git repository there (with `git
update-server-info` run) is clonable over git's dumb HTTP protocol."""
import functools
import http.server
import ssl

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/upstream/www")
server = http.server.ThreadingHTTPServer(("0.0.0.0", 443), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/upstream/cert.pem", "/upstream/key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
