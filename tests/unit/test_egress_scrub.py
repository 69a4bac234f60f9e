"""The egress proxy's scrub: every form of a secret is masked in place (same length), in
header fields and in streamed bodies, whichever chunk boundaries split it."""
from __future__ import annotations

import pytest

from bottle_tasks.sidecars.egress import scrub as S

SECRET = "sk-live/abc+def\"ghi"  # has characters JSON and percent-encoding write differently


def stream_through(scrubber: S.Scrubber, chunks: list[bytes]) -> list[bytes]:
    send = scrubber.stream()
    return [send(c) for c in chunks] + [send(b"")]


@pytest.mark.parametrize("form", sorted(S.forms(SECRET)))
def test_every_form_is_masked_in_place(form):
    data = b"before " + form + b" after"
    out = S.Scrubber([SECRET]).scrub(data)
    assert form not in out and len(out) == len(data)
    assert out.startswith(b"before BOTTLE-REDACTED-") and out.endswith(b" after")


def test_the_forms_are_the_raw_json_and_percent_encoded_ones():
    assert S.forms(SECRET) == {SECRET.encode(), b'sk-live/abc+def\\"ghi', b"sk-live%2Fabc%2Bdef%22ghi"}


def test_header_names_and_values_are_scrubbed():
    fields = S.Scrubber([SECRET]).fields([(b"x-echo", b"Bearer " + SECRET.encode()),
                                           (b"x-" + SECRET.encode(), b"1")])
    assert all(SECRET.encode() not in name + value for name, value in fields)
    assert fields[0][1].startswith(b"Bearer BOTTLE-REDACTED-")


@pytest.mark.parametrize("cut", range(0, len(SECRET) + 8))
def test_a_secret_split_across_chunks_is_masked(cut):
    body = b"data: " + SECRET.encode() + b"\n\n"
    out = stream_through(S.Scrubber([SECRET]), [body[:cut], body[cut:]])
    joined = b"".join(out)
    assert SECRET.encode() not in joined and len(joined) == len(body)
    assert joined.startswith(b"data: BOTTLE-REDACTED-") and joined.endswith(b"\n\n")


def test_a_secret_fed_one_byte_at_a_time_is_masked():
    body = b"x" + SECRET.encode() + b"y"
    joined = b"".join(stream_through(S.Scrubber([SECRET]), [bytes([b]) for b in body]))
    assert joined == b"x" + S.mask(len(SECRET)) + b"y"


def test_only_what_could_start_a_secret_is_held_back():
    send = S.Scrubber([SECRET]).stream()
    assert send(b"data: timed 0\n\n") == b"data: timed 0\n\n"  # nothing held: it goes out now
    assert send(b"data: sk-li") == b"data: "  # the start of the secret waits for the next chunk
    assert send(b"ke a secret") == b"sk-like a secret"  # it was not one after all
    assert send(b"") == b""


def test_what_is_held_back_at_the_end_is_released():
    send = S.Scrubber([SECRET]).stream()
    assert send(b"ends with sk-") == b"ends with "
    assert send(b"") == b"sk-"


def test_without_secrets_nothing_changes():
    scrubber = S.Scrubber([""])
    assert not scrubber
    assert stream_through(scrubber, [b"abc", b"def"]) == [b"abc", b"def", b""]


def test_overlapping_secrets_are_all_masked():
    out = S.Scrubber(["abcdef", "defghi"]).scrub(b"abcdefghi")
    assert b"abcdef" not in out and b"defghi" not in out
    assert b"def" not in out[:6]
