"""The egress proxy's scrub: every form of a secret is masked in place (same length), in
header fields and in streamed bodies, whichever chunk boundaries split it."""
from __future__ import annotations

import base64
import html
import json
import urllib.parse

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


def test_the_forms_are_the_raw_json_and_percent_encoded_ones_and_the_encodings_of_an_echo():
    raw = SECRET.encode()
    assert S.forms(SECRET) == {raw, raw.upper(), b'sk-live/abc+def\\"ghi', b'sk-live\\/abc+def\\"ghi',
                               b"sk-live%2Fabc%2Bdef%22ghi", b"sk-live%2fabc%2bdef%22ghi",
                               raw.hex().encode(), raw.hex().upper().encode(), *S.base64_forms(raw),
                               *(form.encode() for form in S.encoders_forms(SECRET))}
    # (its lower case is itself; PHP's json_encode writes '/' as '\/'; %2f is %2F to a decoder)
    assert len(S.base64_forms(raw)) == 3  # one per offset: no + or / in them, base64url writes them alike
    assert len(S.base64_forms(b"\xfb\xff" * 10)) == 6  # here it does not


def decoded(text: bytes) -> bytes:
    return base64.b64decode(text + b"=" * (-len(text) % 4), altchars=b"-_" if b"-" in text or b"_" in text else None)


@pytest.mark.parametrize("user", ["", "a", "ab", "abc", "alice", "bob-the-builder"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_a_secret_inside_a_longer_base64_text_is_masked_at_any_offset(user, encode):
    # HTTP Basic credentials echoed back: "user:secret" encoded whole, the secret at any offset
    echoed = encode(f"{user}:{SECRET}".encode())
    out = S.Scrubber([SECRET]).scrub(b"Basic " + echoed)
    assert len(out) == len(echoed) + 6 and S.MASK[:8] in out
    assert SECRET.encode() not in decoded(out[6:].replace(S.MASK, b"A" * len(S.MASK)).replace(b"*", b"A"))


@pytest.mark.parametrize("form", [bytes.hex, lambda raw: raw.hex().upper()])
def test_hex_in_either_case_is_masked(form):
    text = form(b"Bearer " + SECRET.encode())
    text = text.encode() if isinstance(text, str) else text
    out = S.Scrubber([SECRET]).scrub(b"<" + text + b">")
    assert SECRET.encode().hex().encode() not in out.lower() and len(out) == len(text) + 2


def test_a_short_secret_has_no_encoded_forms_that_would_mask_ordinary_text():
    assert S.forms("k3y") == {b"k3y"}
    assert S.Scrubber(["k3y"]).scrub(b"6b3379 azN5") == b"6b3379 azN5"


def test_any_bytes_of_a_secret_are_masked():
    secret = "pässwörd-0123456789"
    out = S.Scrubber([secret]).scrub(b"x " + secret.encode() + b" \xff\xfe")
    assert out == b"x " + S.mask(len(secret.encode())) + b" \xff\xfe"


@pytest.mark.parametrize("cut", range(1, 40, 3))
def test_an_encoded_form_split_across_chunks_is_masked(cut):
    body = b"data: " + base64.b64encode(b"Bearer " + SECRET.encode()) + b"\n\n"
    joined = b"".join(stream_through(S.Scrubber([SECRET]), [body[:cut], body[cut:]]))
    assert joined == S.Scrubber([SECRET]).scrub(body) and joined != body


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


def test_where_a_stream_is_cut_does_not_depend_on_the_secret():
    """Where the agent's stream is cut must not tell it whether bytes it chose begin a secret:
    a tail that starts the secret and one that does not are held back alike, and so are tails
    of one secret and of another one twice as long."""
    for tail in (b"sk-li", b"xx-li", SECRET.encode()[:-1], b"x" * (len(SECRET) - 1)):
        for secrets in ([SECRET], [SECRET * 2]):
            chunk = b"data: " + b"." * 2000 + tail
            assert [len(piece) for piece in stream_through(S.Scrubber(secrets), [chunk])] == [
                len(chunk) - S.HOLD_AT_LEAST, S.HOLD_AT_LEAST], (tail, secrets)


def test_a_chunk_that_ends_a_line_goes_out_whole():
    send = S.Scrubber([SECRET]).stream()
    assert send(b"data: timed 0\n\n") == b"data: timed 0\n\n"  # a server-sent event, as it comes
    assert send(b"data: sk-li") == b""  # after the last line break: waits for the next chunk
    assert send(b"ke a secret\r\n") == b"data: sk-like a secret\r\n"
    assert send(b"") == b""


def test_only_what_follows_the_last_line_break_waits():
    for tail in (b"sk-li", b"xx-li"):  # the same cut either way
        send = S.Scrubber([SECRET]).stream()
        assert send(b"line one\nline two\n" + tail) == b"line one\nline two\n"
        assert send(b"") == tail
    send = S.Scrubber([SECRET]).stream()
    long_line = b"b" * (S.HOLD_AT_LEAST + 5)  # a line break further back than what is held
    assert send(b"a\n" + long_line) == b"a\n" + long_line[:5]
    assert send(b"") == long_line[5:]


def test_what_is_held_back_goes_out_with_the_next_chunk_or_at_the_end():
    scrubber = S.Scrubber([SECRET])
    hold = scrubber.hold
    first, second = b"a" * (hold + 10), b"b" * 5
    send = scrubber.stream()
    assert send(first) == b"a" * 10
    assert send(second) == b"a" * 5  # the newest bytes wait, as many as before
    assert send(b"") == b"a" * (hold - 5) + second


def test_a_secret_longer_than_the_least_hold_is_held_back_whole():
    long_secret = "k" * 1500  # its hex form is 3000 bytes
    scrubber = S.Scrubber([long_secret])
    assert scrubber.hold == 2 * len(long_secret) - 1
    hexed = long_secret.encode().hex().encode()
    body = b"x" * 50 + hexed + b"\n"
    joined = b"".join(stream_through(scrubber, [body[:1000], body[1000:]]))
    assert hexed not in joined and joined == b"x" * 50 + S.mask(len(hexed)) + b"\n"


def test_without_secrets_nothing_changes():
    scrubber = S.Scrubber([""])
    assert not scrubber
    assert stream_through(scrubber, [b"abc", b"def"]) == [b"abc", b"def", b""]


def test_overlapping_secrets_are_all_masked():
    out = S.Scrubber(["abcdef", "defghi"]).scrub(b"abcdefghi")
    assert b"abcdef" not in out and b"defghi" not in out
    assert b"def" not in out[:6]


@pytest.mark.parametrize("echo", [
    lambda s: json.dumps({"token": s}).replace("/", "\\/"),          # PHP's json_encode
    lambda s: urllib.parse.quote(s, safe="").lower(),               # %2f: lower-case hex digits
    lambda s: s.upper(),                                              # an error page shouting it
    lambda s: urllib.parse.quote(s),                                  # Python's quote keeps '/'
    lambda s: urllib.parse.quote(s, safe="$&+,:;=@"),                 # Go's PathEscape keeps '+'
    lambda s: "".join(c if c.isalnum() else f"&#x{ord(c):X};" for c in s),  # an HTML attribute encoder
    lambda s: "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in s),  # a JavaScript string encoder
    lambda s: html.escape(s),                                         # an HTML page
])
def test_reflections_re_encoded_as_common_servers_do_are_masked(echo):
    out = S.Scrubber([SECRET]).scrub(b"<<" + echo(SECRET).encode() + b">>")
    assert S.MASK in out, out
    for form in (SECRET, SECRET.upper(), urllib.parse.quote(SECRET, safe="").lower()):
        assert form.encode() not in out, out


@pytest.mark.parametrize("secret", [SECRET, "sk-ant-api03-" + "aB3_" * 20, "a/b+c=d", "a" * 40, "ü/é+" * 5])
def test_every_form_holds_one_of_the_needles_the_fast_path_looks_for(secret):
    """The RE2 pass runs only where a needle is: a form that held none would go out unmasked."""
    needles = S.needles([secret])
    assert all(any(needle in form for needle in needles) for form in S.forms(secret))


def test_secrets_given_once_through_a_generator_are_masked():
    """The proxy hands its secrets as a generator; read once for the forms, the needles got none
    and nothing was masked."""
    out = S.Scrubber(secret for secret in [SECRET]).scrub(b"x " + SECRET.encode() + b" y")
    assert SECRET.encode() not in out and S.MASK in out
