"""Benchmark client, run inside a container, straight to the upstream or through an HTTP
proxy (CONNECT tunnel). Prints one JSON line.

    client.py HOST PORT COUNT PROXY CAFILE                 keep-alive GETs: requests/s, p50/p99 ms
    client.py HOST PORT COUNT PROXY CAFILE api-headers     the same, each with an API client's headers
    client.py HOST PORT COUNT PROXY CAFILE parallel N      N connections at once: aggregate requests/s
    client.py HOST PORT BYTES PROXY CAFILE download        one download of BYTES: MB/s
    client.py HOST PORT COUNT PROXY CAFILE upload KIND MIB COUNT JSON bodies of MIB MiB (text | nearmiss)
"""
import http.client
import json
import ssl
import statistics
import sys
import threading
import time

host, port, count, proxy, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
mode = sys.argv[6] if len(sys.argv) > 6 else "keepalive"
context = ssl.create_default_context(cafile=cafile)


def connect() -> http.client.HTTPSConnection:
    if proxy != "-":
        proxy_host, proxy_port = proxy.split(":")
        conn = http.client.HTTPSConnection(proxy_host, int(proxy_port), context=context, timeout=120)
        conn.set_tunnel(host, port)
        return conn
    return http.client.HTTPSConnection(host, port, context=context, timeout=120)


# Headers shaped like an Anthropic SDK client's, as Claude Code's requests carry them:
# the firewall scans every header name and value for secrets, the bare hop scans nothing.
API_HEADERS = {
    "accept": "application/json", "anthropic-beta": "oauth-2025-04-20,fine-grained-tool-streaming-2025-05-14",
    "anthropic-dangerous-direct-browser-access": "true", "anthropic-version": "2023-06-01",
    "content-type": "application/json", "user-agent": "claude-cli/2.0.1 (external, cli)", "x-app": "cli",
    "x-stainless-arch": "x64", "x-stainless-lang": "js", "x-stainless-os": "Linux",
    "x-stainless-package-version": "0.60.0", "x-stainless-retry-count": "0", "x-stainless-runtime": "node",
    "x-stainless-runtime-version": "v22.0.0", "x-stainless-timeout": "600", "accept-encoding": "identity",
    "connection": "keep-alive",
}
HEADERS = API_HEADERS if mode == "api-headers" else {}


def get(conn, path: str) -> None:
    conn.request("GET", path, headers=HEADERS)
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status


def keepalive() -> dict:
    conn = connect()
    latencies = []
    for i in range(count + 20):
        started = time.perf_counter()
        get(conn, f"/bench/{i}")
        if i >= 20:  # the first requests warm up the connection and the TLS session
            latencies.append(time.perf_counter() - started)
    latencies.sort()
    return {"rps": count / sum(latencies), "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def parallel(clients: int) -> dict:
    per_client = max(1, count // clients)
    conns = [connect() for _ in range(clients)]
    for conn in conns:
        get(conn, "/bench/warm")
    barrier = threading.Barrier(clients + 1)

    def work(conn):
        barrier.wait()
        for i in range(per_client):
            get(conn, f"/bench/p{i}")

    threads = [threading.Thread(target=work, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return {"rps": clients * per_client / (time.perf_counter() - started), "clients": clients}


def download() -> dict:
    conn = connect()
    started = time.perf_counter()
    conn.request("GET", f"/bytes/{count}")
    response = conn.getresponse()
    received = 0
    while chunk := response.read(1 << 20):
        received += len(chunk)
    assert response.status == 200 and received == count, (response.status, received)
    return {"mb_per_s": received / 1e6 / (time.perf_counter() - started), "bytes": received}


def upload(kind: str, mib: int) -> dict:
    if kind == "text":
        unit = "The quick brown fox jumps over the lazy dog; a line of ordinary prose in a file the agent read. "
    else:  # shapes one character short of a secret, so every rule's literal search hits and its regex runs
        unit = "AKIAIOSFODNN7EXAMPL sk-ant-api03-short ghp_abcdefghijklmnopqrstuvwxyz01234 xoxb-123 AIzaSyA- "
    text = unit * (mib * (1 << 20) // len(unit))
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]}).encode()
    conn = connect()
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("POST", "/v1/bench", body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        seconds.append(time.perf_counter() - started)
    return {"seconds_per_request": statistics.median(seconds), "body_bytes": len(body)}


if mode == "parallel":
    result = parallel(int(sys.argv[7]))
elif mode == "download":
    result = download()
elif mode == "upload":
    result = upload(sys.argv[7], int(sys.argv[8]))
else:
    result = keepalive()
print(json.dumps(result))
