"""A Ctrl-C while the `bottle` command is still importing invoke and its own modules ends it
with one line and exit 130, not Python's traceback; once loaded, Ctrl-C is the executor's
again (a rollback, tested with the engine in tests/engine/test_interrupts.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from bottle_tasks import cli, command

BOTTLE = Path(sys.executable).with_name("bottle")  # the installed console script

# Loaded by Python at start-up (PYTHONPATH): the SIGINT arrives exactly while the command
# imports invoke, as a Ctrl-C typed in the first tenth of a second would.
CTRL_C_DURING_IMPORT = textwrap.dedent("""
    import os, signal, sys, time

    class CtrlCOnImport:
        def find_spec(self, name, path=None, target=None):
            if name == "invoke":
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # Python runs the handler here, inside the import
            return None

    sys.meta_path.insert(0, CtrlCOnImport())
""")


def test_a_ctrl_c_while_the_command_loads_ends_it_quietly(tmp_path: Path):
    (tmp_path / "sitecustomize.py").write_text(CTRL_C_DURING_IMPORT)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([str(BOTTLE), "--list"], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 130, proc
    assert proc.stderr == command.NOTHING_DONE.decode()
    assert proc.stdout == ""


def test_the_command_runs_with_pythons_own_ctrl_c_handler_once_loaded(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "main", lambda: seen.append(signal.getsignal(signal.SIGINT)))
    before = signal.getsignal(signal.SIGINT)
    try:
        command.main()
    finally:
        signal.signal(signal.SIGINT, before)
    assert seen == [signal.default_int_handler]


def test_the_package_itself_imports_nothing_heavy():
    probe = "import sys, bottle_tasks; print(sorted(m for m in ('invoke', 'yaml', 'fabric') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
