"""One JSON line per fetch and push on stdout, beside the firewall's decisions in `inv logs`
(same fields where they mean the same: decision, method, host, path, rule, reason)."""
from __future__ import annotations

import json
import sys
import threading
import time

_LOCK = threading.Lock()


def emit(**record) -> None:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", "source": "gitgate", **record}
    line = json.dumps(record, ensure_ascii=True, sort_keys=False)  # escapes control characters
    with _LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
