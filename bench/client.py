"""Benchmark client, run inside a container: N HTTPS requests over one keep-alive
connection, straight to the upstream or through an HTTP proxy (CONNECT tunnel).
Prints one JSON line: requests per second and latency percentiles in ms."""
import http.client
import json
import ssl
import statistics
import sys
import time

host, port, count, proxy, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
context = ssl.create_default_context(cafile=cafile)
if proxy != "-":
    proxy_host, proxy_port = proxy.split(":")
    conn = http.client.HTTPSConnection(proxy_host, int(proxy_port), context=context, timeout=30)
    conn.set_tunnel(host, port)
else:
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=30)

latencies = []
for i in range(count + 20):
    started = time.perf_counter()
    conn.request("GET", f"/bench/{i}")
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
    if i >= 20:  # the first requests warm up the connection and the TLS session
        latencies.append(time.perf_counter() - started)
total = sum(latencies)
latencies.sort()
print(json.dumps({"rps": count / total, "p50_ms": 1000 * statistics.median(latencies),
                  "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}))
