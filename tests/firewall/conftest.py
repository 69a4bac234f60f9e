"""Firewall addon unit tests. They need mitmproxy, which only the firewall image has:
tests/test_firewall_addon.py builds that image and runs this directory inside it.
On the host (no mitmproxy) the directory is not collected at all."""

import importlib.util

if importlib.util.find_spec("mitmproxy") is None or importlib.util.find_spec("firewall") is None:
    collect_ignore_glob = ["test_*.py"]

else:
    import pytest

    @pytest.fixture(scope="module")
    def upstream(tmp_path_factory):
        """An HTTPS upstream on loopback (test_live.Upstream), one per test module."""
        from test_live import Upstream

        up = Upstream(tmp_path_factory.mktemp("upstream"))
        yield up
        up.close()
