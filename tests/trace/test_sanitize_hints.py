"""The sanitizer's credential pre-filter (``_hinted``): short text is tested hint by hint, long text
with one RE2 pass; both must find every hint in any case, or a secret would be stored unredacted."""

from __future__ import annotations

import pytest

from costar.trace.sanitize import _HINTS, _LONG_TEXT, REDACTED, Sanitizer, _hinted

_LENGTHS = (20, _LONG_TEXT + 100)


@pytest.mark.parametrize("length", _LENGTHS)
@pytest.mark.parametrize("hint", [*_HINTS, "api_key", "API-KEY", "apikey"])
def test_every_hint_is_found_in_short_and_long_text_in_any_case(hint: str, length: int) -> None:
    for spelled in (hint, hint.upper(), hint.title()):
        text = "é" * (length - len(spelled)) + spelled
        assert _hinted(text), (spelled, len(text))


@pytest.mark.parametrize("length", _LENGTHS)
def test_text_without_a_hint_is_not_hinted(length: int) -> None:
    assert not _hinted(("the order ships on Friday. " * 40)[:length])
    assert not _hinted(("api\nkey " * 200)[:length])  # "." in api.?key does not cross a line


@pytest.mark.parametrize("text", ["DAP\u0130", "AP\u0130KEY", "aP\u0130-key", "to\u212aen"])
def test_what_lower_turns_into_a_hint_is_hinted_in_long_text_too(text: str) -> None:
    short = _hinted(text)
    long = _hinted("x" * _LONG_TEXT + text)
    assert long or not short, text


def test_long_text_with_lone_surrogates_is_searched() -> None:
    assert _hinted("\ud800x" * _LONG_TEXT + "Bearer")
    assert not _hinted("\ud800x" * _LONG_TEXT)


def test_a_secret_deep_in_long_text_is_redacted() -> None:
    key = "sk-" + "A1b2C3d4E5" * 4
    text = "the order ships on Friday. " * 200 + f"OPENAI_API_KEY={key} " + "and more text " * 50
    clean = Sanitizer().text(text)
    assert key not in clean
    assert REDACTED in clean


@pytest.mark.parametrize("around", ['"', "\n", "\\", "\t", "\x01", "é", "\u212a"])
def test_a_secret_next_to_characters_json_escapes_is_redacted_in_attributes(around: str) -> None:
    # The quick check looks for hints in the values' JSON text, where these characters are escaped.
    key = "ghp_" + "a1B2c3D4e5" * 4
    attrs = {"plain": "nothing here", "nested": {"list": ["x", f"{around}token={around}{key}{around}"]},
             "header": f"{around}Authorization: Bearer {key}{around}"}
    clean = Sanitizer().attributes(attrs)
    assert key not in repr(clean)
    assert clean["plain"] == "nothing here"
    assert REDACTED in clean["header"]


def test_attributes_without_a_hint_are_returned_as_they_are() -> None:
    attrs = {"gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": 'say "hi"\n'}]}],
             "n": 3}
    assert Sanitizer().attributes(attrs) is attrs


@pytest.mark.parametrize("value", [
    "api\tkey authorızation=abcdefghijklmnop",
    'api"key authorİzation: abcdefghijklmnopqr',
    "x" * 80 + " api\\key apı_key=abcdefghijklmnopqr",
    "name\tapi\tkey\nAuthorızation=Zm9vYmFyYmF6cXV4MTIz",
])
def test_attributes_are_redacted_as_their_text_is_when_the_api_key_hint_spans_a_json_escape(value: str) -> None:
    # The quick check reads the values' JSON, where api.?key's free character may be an escape (\t, \");
    # it must send the value on to the redaction that Sanitizer.text applies to the same string.
    sanitizer = Sanitizer()
    assert sanitizer.attributes({"msg": value})["msg"] == sanitizer.text(value)
    assert REDACTED in sanitizer.text(value)
