"""Firewall addon unit tests. They need mitmproxy, which only the firewall image has:
tests/test_firewall_addon.py builds that image and runs this directory inside it.
On the host (no mitmproxy) the directory is not collected at all."""

import importlib.util

if importlib.util.find_spec("mitmproxy") is None or importlib.util.find_spec("firewall") is None:
    collect_ignore_glob = ["test_*.py"]
