"""Responses are streamed, never buffered: server-sent events and long downloads go
straight through, and the firewall's memory does not grow with a response's size."""

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
