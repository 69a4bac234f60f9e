"""Start the supervise sidecar: ``python -m supervise.main --config /etc/bottle``.

The MCP server (streamable HTTP on :9100, the agent's side) and the control socket (the
operator's side, ``control.py``) share one event loop and one board.

Exit codes: 0 clean stop, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

EX_CONFIG = 78
PORT = 9100
MAX_SESSIONS = 32
MAX_CONNECTIONS = 64  # uvicorn answers 503 past them


async def run(config_dir: Path, port: int) -> int:
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from . import control
    from .server import Supervisor, build_server, log_line

    try:
        sup = Supervisor(config_dir)
    except (OSError, ValueError, KeyError) as e:
        print(f"bottle-supervise: error: bad configuration in {config_dir}: {e}", file=sys.stderr, flush=True)
        return EX_CONFIG
    server = build_server(sup)
    # DNS-rebinding protection: only requests addressed to the sidecar by its alias.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                         allowed_hosts=["supervise", f"supervise:{port}"], allowed_origins=[])
    # Sessions the agent may hold open: the SDK's 10,000 (41 KB each) ran the 256 MiB sidecar out
    # of memory in under a minute of bare `initialize` calls; Claude Code holds one.
    app = server.streamable_http_app(transport_security=security, host="0.0.0.0", max_sessions=MAX_SESSIONS)
    os.makedirs(os.path.dirname(control.SOCKET), mode=0o700, exist_ok=True)
    await control.serve(sup.board, lambda r: None)
    config = uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, limit_concurrency=MAX_CONNECTIONS)
    log_line(event="ready", bottle=sup.bottle, port=port, timeout=sup.timeout)
    await uvicorn.Server(config).serve()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bottle-supervise", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="/etc/bottle", help="dir with supervise.json and policy.json")
    ap.add_argument("--port", type=int, default=PORT)
    args = ap.parse_args(argv)
    return asyncio.run(run(Path(args.config), args.port))


if __name__ == "__main__":
    sys.exit(main())
