"""Responses are streamed, never buffered: server-sent events and long downloads go
straight through, and the firewall's memory does not grow with a response's size.

Nor with a connection's life: mitmproxy keeps every message a WebSocket or a raw tunnel
relays in its flow until the connection ends (a deflated WebSocket held 300 MiB for 0.3 MiB
on the wire). Each message is forgotten once the concerns before this one (DLP) have seen
it; mitmproxy relays it from a reference of its own.
"""

from __future__ import annotations

from mitmproxy import http

from .failclosed import fail_closed
from .flowstate import Concern, counter, meta, settled


class Streaming(Concern):
    @fail_closed
    def responseheaders(self, flow: http.HTTPFlow):
        if settled(flow) or flow.response is None:
            return
        flow.response.stream = counter(meta(flow), "bytes_in")

    @fail_closed
    def websocket_message(self, flow: http.HTTPFlow):
        if flow.websocket is not None:
            flow.websocket.messages.clear()

    @fail_closed
    def tcp_message(self, flow):
        flow.messages.clear()
