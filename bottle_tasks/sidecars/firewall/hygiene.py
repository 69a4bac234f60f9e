"""Header hygiene: what the firewall forwards is well-formed and bounded.

* CR, LF and NUL inside a header name or value are refused: a proxy or server that
  splits on a bare CR would see headers the firewall never saw.
* Size limits per header and for all headers (HTTP/1 heads are also bounded while they
  arrive, see ``mitm_limits``; HTTP/2 header lists by the h2 library's 64 KiB).
* The method must be an HTTP token of reasonable length.
* ``Transfer-Encoding`` other than plain ``chunked`` is refused: ``gzip, chunked`` would
  carry a body the DLP scan reads compressed.
* Hop-by-hop headers are the firewall's, not the upstream's: ``Proxy-Connection``,
  ``Keep-Alive``, ``Proxy-Authorization`` and every header named in ``Connection`` are
  removed before the request leaves (``Connection: upgrade`` stays, WebSockets need it).
"""

from __future__ import annotations

import re

from mitmproxy import http

from .failclosed import fail_closed
from .flowstate import Concern, settled

MAX_HEADER_BYTES = 16 * 1024  # one header line (name + value)
MAX_HEADERS_BYTES = 64 * 1024  # all of them together
MAX_HEADERS = 256
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}")
_FORBIDDEN = re.compile(r"[\r\n\x00]")
HOP_BY_HOP = frozenset({"proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate"})
# Connection tokens that name no header to strip: they steer this very connection.
CONNECTION_OPTIONS = frozenset({"close", "keep-alive", "upgrade"})
# Headers that frame the message: a Connection header naming one would have us strip it and
# forward a body the upstream then frames differently (request smuggling). Refused instead.
FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class HeaderHygiene(Concern):
    """Refuses malformed or oversized request heads; strips hop-by-hop headers."""

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow):
        if settled(flow):
            return
        problem = check(flow.request)
        if problem is not None:
            rule, status, reason = problem
            self.fw.deny(flow, rule, reason, status=status)
            return
        strip_hop_by_hop(flow.request.headers)


def check(req: http.Request) -> tuple[str, int, str] | None:
    """(rule, status, reason) for a request head the firewall will not forward, else None."""
    if not _METHOD.fullmatch(req.method):
        return "bad-method", 400, "the request method is not an HTTP method token (A-Z, at most 32)"
    fields = req.headers.fields
    if len(fields) > MAX_HEADERS:
        return "header-limit", 431, f"more than {MAX_HEADERS} request headers"
    total = 0
    for name, value in fields:
        size = len(name) + len(value)
        total += size
        if size > MAX_HEADER_BYTES:
            return "header-limit", 431, f"a request header is larger than {MAX_HEADER_BYTES} bytes"
        if _FORBIDDEN.search(name.decode("latin-1")) or _FORBIDDEN.search(value.decode("latin-1")):
            return "bad-header", 400, "a request header contains CR, LF or NUL"
    if total > MAX_HEADERS_BYTES:
        return "header-limit", 431, f"the request headers are larger than {MAX_HEADERS_BYTES} bytes"
    if connection_tokens(req.headers) & FRAMING:
        return "bad-header", 400, "the Connection header names a header that frames the request"
    codings = [c.strip().lower() for te in req.headers.get_all("transfer-encoding") for c in te.split(",")]
    if codings and codings != ["chunked"]:
        return (
            "transfer-coding",
            501,
            "only 'Transfer-Encoding: chunked' is accepted; send compressed bodies with Content-Encoding",
        )
    return None


def connection_tokens(headers: http.Headers) -> set[str]:
    return {t.strip().lower() for value in headers.get_all("connection") for t in value.split(",") if t.strip()}


def strip_hop_by_hop(headers: http.Headers) -> None:
    named = connection_tokens(headers)
    for name in HOP_BY_HOP | (named - CONNECTION_OPTIONS):
        if name in headers:
            del headers[name]
    kept = sorted(named & CONNECTION_OPTIONS)
    if "connection" in headers:
        if kept:
            headers["connection"] = ", ".join(kept)
        else:
            del headers["connection"]
