"""Firewall addon unit tests. They need mitmproxy, which only the firewall image has:
tests/test_firewall_addon.py builds that image and runs this directory inside it.
On the host (no mitmproxy) the directory is not collected at all."""

import importlib.util

if importlib.util.find_spec("mitmproxy") is None or importlib.util.find_spec("firewall") is None:
    collect_ignore_glob = ["test_*.py"]

else:
    import logging

    import pytest

    @pytest.fixture
    def root_logger():
        """mitmproxy's masters and some addons install handlers on the root logger: undo that."""
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        yield root
        root.setLevel(level)
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)

    @pytest.fixture(scope="module")
    def upstream(tmp_path_factory):
        """An HTTPS upstream on loopback (test_live.Upstream), one per test module."""
        from test_live import Upstream

        up = Upstream(tmp_path_factory.mktemp("upstream"))
        yield up
        up.close()
