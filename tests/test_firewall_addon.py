"""Runs the firewall addon's unit tests (tests/firewall/) inside the firewall image.

mitmproxy lives only in the sidecar image, not in the host venv, so this test builds
the image with plain `docker build` (the same context the controller's `build` step
makes: sidecar/ + extra-ca.pem), then a test image FROM it with pytest added, and
runs pytest in a locked-down container (no network, read-only, no capabilities).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from helpers import missing


def _helper():
    name = "bottle_tests_firewall_run_in_image"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "firewall" / "run_in_image.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


helper = _helper()


def require_docker() -> None:
    problem = helper.docker_problem()
    if problem is not None:
        missing(f"Docker unavailable: {problem}")


def test_image_has_pinned_mitmproxy_and_no_compiler():
    require_docker()
    image = helper.firewall_image()
    r = helper.docker(
        "run", "--rm", "--label", helper.LABEL, "--network", "none", "--read-only",
        "--entrypoint", "/opt/bottle/venv/bin/python", image,
        "-c", "import mitmproxy.version as v, shutil; print(v.VERSION, shutil.which('gcc'), shutil.which('cc'))",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    version, gcc, cc = r.stdout.split()
    pinned = re.search(r"^mitmproxy==(\S+)$", (helper.SIDECAR / "requirements.txt").read_text(), re.M)
    assert pinned and version == pinned.group(1)
    assert tuple(int(x) for x in version.split(".")[:3]) >= (12, 1, 2)
    assert gcc == "None" and cc == "None"


def test_firewall_unit_tests_pass_inside_image():
    require_docker()
    r = helper.run_unit_tests(["-p", "no:warnings"])
    output = f"--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr}"
    assert r.returncode == 0, f"pytest inside the firewall image failed (exit {r.returncode}):\n{output}"
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert re.search(r"\b\d+ passed\b", summary), output
    assert not re.search(r"\b(failed|error|errors|skipped)\b", summary), output
    print(summary)
