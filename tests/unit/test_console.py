"""What bottle prints of the agent's text: shown, never obeyed or hidden by the terminal."""
from __future__ import annotations

import io

import pytest

from bottle_tasks import console

HIDDEN = {
    "ESC (CSI, OSC)": "\x1b",
    "8-bit CSI": "\x9b",
    "bell": "\x07",
    "carriage return": "\r",
    "backspace": "\b",
    "DEL": "\x7f",
    "right-to-left override": "\u202e",
    "isolate": "\u2066",
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "byte-order mark": "\ufeff",
    "soft hyphen": "\u00ad",
    "tag character": "\U000e0041",
    "private use": "\ue000",
    "unassigned": "\U0003fffe",
    "lone surrogate": "\ud800",
    "line separator": "\u2028",
}


@pytest.mark.parametrize("char", HIDDEN.values(), ids=HIDDEN.keys())
def test_visible_shows_every_control_and_invisible_character_as_an_escape(char):
    shown = console.visible(f"a{char}b")
    assert char not in shown and shown.startswith("a\\") and shown.endswith("b"), shown
    streamed = io.StringIO()
    console.VisibleStream(streamed).write(f"a{char}b\n\tc")
    assert char not in streamed.getvalue() and streamed.getvalue().endswith("b\n\tc")


def test_visible_keeps_printable_text_of_any_script():
    text = "café 日本語 🚀 [bold]x[/] Ω"
    assert console.visible(text) == text


def test_a_line_break_is_escaped_in_a_value_and_kept_in_a_stream():
    assert console.visible("name\nforged line") == "name\\nforged line"
    streamed = io.StringIO()
    console.VisibleStream(streamed).write("line\nnext\r")
    assert streamed.getvalue() == "line\nnext\\r"


def test_markup_and_emoji_codes_in_the_agents_text_print_as_written():
    with console.err.capture() as shown:
        console.error("agent says :white_check_mark: [link=https://x.test]click[/link] \x1b[2J")
    text = shown.get()
    assert ":white_check_mark:" in text and "✅" not in text, text
    assert "[link=https://x.test]click[/link]" in text and "\x1b[2J" not in text, text


def test_a_commands_output_is_escaped_even_into_a_pipe_and_not_kept(monkeypatch):
    piped_out, piped_err = io.StringIO(), io.StringIO()  # not terminals
    monkeypatch.setattr("sys.stdout", piped_out)
    monkeypatch.setattr("sys.stderr", piped_err)
    streams = console.agent_output_streams()
    streams["out_stream"].write("x\x1b]52;c;aGk=\x07y\n")
    streams["err_stream"].write("\x1b[2J")
    assert piped_out.getvalue() == "x\\x1b]52;c;aGk=\\x07y\n" and piped_err.getvalue() == "\\x1b[2J"
    assert not any(stream.keeps_output for stream in streams.values())
