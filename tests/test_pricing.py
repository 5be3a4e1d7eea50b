"""costar.pricing's limits: a price is a number from 0 to MAX_PRICE_PER_MTOK (USD per 1M tokens), a
model name is text, and a call's cost is always finite, whatever the counts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from costar.errors import ConfigError, ConfigFileError
from costar.pricing import MAX_PRICE_PER_MTOK, Price, PriceError, PriceTable, load_price_table

BIG = 10**400  # an integer no float holds: float(BIG) raises OverflowError


@pytest.mark.parametrize(("entry", "says"), [
    ({"input": BIG, "output": 2}, "'input' must be at most 1,000,000 USD per 1M tokens ($1 a token), got an integer "
                                  "of 401 digits; write the price in USD per million tokens"),
    ([BIG, 2], "'input' must be at most 1,000,000 USD per 1M tokens ($1 a token), got an integer of 401 digits"),
    ({"input": 1, "output": 1e306}, "'output' must be at most 1,000,000 USD per 1M tokens ($1 a token), got 1e+306"),
    ({"input": 1, "output": 2, "cache_read": 1_000_001}, "'cache_read' must be at most 1,000,000 USD per 1M tokens"),
    ({"input": -BIG, "output": 2}, "'input' must be a non-negative number of USD per 1M tokens, got a negative "
                                   "integer of 401 digits"),
    ({"input": "x" * 500, "output": 2}, "'input' must be a non-negative number of USD per 1M tokens, got 'xxxx"),
])
def test_a_price_out_of_range_is_a_price_error_naming_the_field(entry: Any, says: str) -> None:
    with pytest.raises(PriceError) as err:
        PriceTable().with_overrides({"m1": entry}, source="test")
    message = str(err.value)
    assert says in message, message
    assert len(message) < 300  # a 401-digit integer or a long string is not copied into the message


def test_the_bound_itself_is_accepted_and_named_in_the_docs() -> None:
    table = PriceTable().with_overrides({"m1": [MAX_PRICE_PER_MTOK, int(MAX_PRICE_PER_MTOK)]})
    assert table.cost("x", "m1", 10**6, 10**6) == (2_000_000.0, True)
    conventions = (Path(__file__).parents[1] / "docs" / "CONVENTIONS.md").read_text(encoding="utf-8")
    assert "at most 1,000,000 USD per million tokens" in conventions


@pytest.mark.parametrize(("key", "says"), [
    (1, "the model name 1 reads as a number, not text; quote it: '1':"),
    (1.5, "the model name 1.5 reads as a number, not text; quote it: '1.5':"),
    (None, "the model name ~ reads as null, not text; quote it: '~':"),
    (True, "the model name true reads as a boolean, not text; quote it: 'true':"),
])
def test_a_model_name_that_is_not_text_is_refused(key: Any, says: str) -> None:
    with pytest.raises(PriceError) as err:
        PriceTable().with_overrides({key: [1, 2]}, source="test")
    assert err.value.key is key or err.value.key == key
    assert err.value.problem == says


def test_a_price_object_out_of_range_is_refused_when_made() -> None:
    for bad in (math.inf, math.nan, -1.0, MAX_PRICE_PER_MTOK * 2, "2", True):
        with pytest.raises(ValueError, match=r"Price\.output_per_mtok must be a number of USD per 1M tokens from 0 "
                                             r"to 1,000,000, got"):
            Price(1.0, bad)
    with pytest.raises(ValueError, match=r"cache_read_per_mtok .* got an integer of 401 digits"):
        Price(1.0, 2.0, cache_read_per_mtok=BIG)
    assert Price(1, 2, cache_read_per_mtok=None).cache_read_per_mtok is None


def test_a_cost_is_finite_at_the_highest_price_and_any_token_count() -> None:
    price = Price(MAX_PRICE_PER_MTOK, MAX_PRICE_PER_MTOK, cache_read_per_mtok=MAX_PRICE_PER_MTOK,
                  cache_write_per_mtok=MAX_PRICE_PER_MTOK, cache_write_1h_per_mtok=MAX_PRICE_PER_MTOK)
    int64 = 2**63 - 1
    at_int64 = price.cost(int64, int64, cache_read=int64, cache_write=int64, cache_write_1h=int64)
    # Counts beyond 64 bits (a float would overflow on 10**400) count as the largest 64-bit one.
    beyond = price.cost(BIG, BIG, cache_read=BIG, cache_write=BIG, cache_write_1h=BIG)
    assert math.isfinite(beyond)
    assert beyond == at_int64
    assert price.cost(10**6, 0) == 1_000_000.0


def test_a_price_file_that_is_not_valid_yaml_names_its_line_and_problem(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("m1: {input: 1, output: 2}\nm2: {input: 1, output\n  bad: [\n")
    with pytest.raises(ConfigFileError) as err:
        load_price_table(file)
    assert (err.value.path, err.value.line) == (str(file), 3)
    assert err.value.problem == "invalid YAML: expected ',' or '}', but got ':'"
    assert str(err.value) == f"price file {file}:3: invalid YAML: expected ',' or '}}', but got ':'"


def test_a_json_price_file_with_a_huge_integer_is_a_price_error(tmp_path: Path) -> None:
    file = tmp_path / "p.json"
    file.write_text('{"m1": {"input": 1' + "0" * 400 + ', "output": 1}}')
    with pytest.raises(PriceError, match="'input' must be at most 1,000,000 USD per 1M tokens"):
        load_price_table(file)


def test_a_price_file_with_a_model_name_that_is_not_text_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("models:\n  gpt-4o: [1, 2]\n  1: [1, 2]\n")
    with pytest.raises(ConfigError, match="the model name 1 reads as a number, not text; quote it: '1':"):
        load_price_table(file)
    file.write_text("models:\n  gpt-4o: [1, 2]\n  '1': [1, 2]\n")
    assert load_price_table(file).price("1") == Price(1, 2)
