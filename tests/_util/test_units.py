"""Durations and sizes: one parser each, shared by monitors, server.yaml and scenario resources."""

from __future__ import annotations

import math

import pytest

from costar._util import units
from costar._util.units import parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 7 * 86400), ("2w", 14 * 86400),
    ("1.5h", 5400), (" 30S ", 30), ("12", 12), (45, 45.0), (0.5, 0.5),
])
def test_durations_as_people_write_them(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(text, positive=True) == seconds


@pytest.mark.parametrize(("value", "fragment"), [
    ("soon", "'soon' is not a duration"), ("5y", "'5y' is not a duration"), ("-3s", "is not a duration"),
    (True, "a duration is a number of seconds"), (-1, "zero or more"), (math.inf, "zero or more"),
])
def test_bad_durations_say_what_is_wrong(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)


def test_zero_is_a_duration_unless_it_must_be_positive() -> None:
    assert parse_duration("0s") == 0
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration("0s", positive=True)


@pytest.mark.parametrize(("text", "size"), [
    ("2GiB", 2 * 1024**3), ("512Mi", 512 * 1024**2), ("1.5GB", 1_500_000_000), ("200kb", 200_000),
    ("10 gb", 10 * 1000**3), ("64", 64), (4096, 4096),
])
def test_sizes_decimal_and_binary(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_bad_sizes_name_the_setting_and_the_forms() -> None:
    with pytest.raises(ValueError, match="'lots' is not a size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="memory 'lots': write bytes or a size like '2GiB'"):
        parse_size("lots", what="memory")
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_size(-1)
    with pytest.raises(ValueError, match="a number of bytes"):
        parse_size(False)


@pytest.mark.parametrize(("value", "text"), [
    (0, "$0.0000"), (0.0123, "$0.0123"), (0.5, "$0.5000"), (0.000012, "$0.000012"), (0.0000125, "$0.000013"),
    (0.0001, "$0.0001"), (0.000001, "$0.000001"), (1e-15, "$0.0000"), (1, "$1.00"), (1234.5, "$1,234.50"), (-0.25, "-$0.2500"), (float("inf"), "$inf"),
])
def test_money_shows_two_significant_digits_below_a_dollar_and_cents_above(value: float, text: str) -> None:
    assert units.format_usd(value) == text
