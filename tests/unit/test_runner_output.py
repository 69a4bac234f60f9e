"""bottle's invoke runners read a command's output in linear time: invoke joins all the output
so far after every 1,000-byte read to offer it to watchers, even with none (8 MB of output took
5.1 s here, and the agent controls what `git diff` prints). With no watchers nothing is joined;
a watcher still sees the whole output."""
from __future__ import annotations

from invoke import Config, Context, Responder
from invoke.runners import Runner

from bottle_tasks.target import PromptLocal


def run(command: str, **kwargs):
    return Context(Config(overrides={"runners": {"local": PromptLocal}})).run(command, in_stream=False, timeout=30,
                                                                              **kwargs)


def test_output_is_not_joined_for_watchers_that_are_not_there(monkeypatch):
    joins = []
    monkeypatch.setattr(Runner, "respond", lambda self, buffer_: joins.append(len(buffer_)))
    result = run("head -c 200000 /dev/zero | tr '\\0' x", hide=True)
    assert result.stdout == "x" * 200_000  # all of it kept
    assert joins == []  # invoke's own respond: 200 joins of up to 200 KB each


def test_a_watcher_still_sees_the_output():
    result = run("printf 'name? '; read answer; echo \"hello $answer\"", hide=True,
                 watchers=[Responder(pattern=r"name\? ", response="bottle\n")])
    assert result.stdout.endswith("hello bottle\n"), result.stdout


def test_a_sink_that_keeps_nothing_gets_all_the_output_and_none_is_kept():
    class Sink:
        keeps_output = False  # as the `logs --follow` sink: it may run for hours

        def __init__(self):
            self.size = 0

        def write(self, data: str) -> None:
            self.size += len(data)

        def flush(self) -> None:
            pass

    sink = Sink()
    result = run("head -c 300000 /dev/zero | tr '\\0' x", out_stream=sink)
    assert sink.size == 300_000 and result.stdout == ""


def test_a_followed_sidecars_stderr_is_escaped_and_not_kept():
    """`logs --follow` passes the sidecar's stderr on as well: escaped (mitmproxy's warnings
    may quote the agent's traffic) and, like its stdout, not kept for the hours it runs."""
    import io

    from bottle_tasks import console

    shown = io.StringIO()
    result = run("printf 'warn: \\033]52;c;aGk=\\007 from the agent\\n' >&2",
                 err_stream=console.VisibleStream(shown, keeps_output=False))
    assert shown.getvalue() == "warn: \\x1b]52;c;aGk=\\x07 from the agent\n", shown.getvalue()
    assert result.stderr == ""


def test_a_character_split_between_two_reads_comes_back_whole():
    """invoke decoded each 1,000-byte read alone: `é` across a read's edge became two U+FFFD,
    and a file name the agent placed there came back as another name."""
    # one write (atomic in a pipe): the first read has 1,000 bytes, the é's first byte last
    result = run("printf '%s\\303\\251/bottle.yaml\\377' \"$(printf '%0999d' 0)\"", hide=True)
    assert result.stdout == "0" * 999 + "é/bottle.yaml\ufffd", result.stdout[990:]
