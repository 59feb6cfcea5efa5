"""A CSV header is refused when it names a column twice or too many columns, in time linear in its length."""

import io
import time

import pytest

from services.registry.csv_profile import profile_csv
from shared.csv_format import header_problem
from shared.errors import ValidationFailed

WIDE = [f"c{i}" for i in range(10_000)]


def test_a_repeat_among_ten_thousand_column_names_is_found_quickly():
    names = [*WIDE[:-1], "c17"]
    started = time.perf_counter()
    assert header_problem(names, max_columns=10_000) == "Column names repeat: c17."
    # Comparing each name with every other took ~0.7 s here; one pass takes ~1 ms.
    assert time.perf_counter() - started < 0.25


def test_a_header_of_exactly_the_column_limit_is_read_and_one_more_is_refused_naming_the_limit():
    assert header_problem(WIDE, max_columns=10_000) is None
    assert header_problem([*WIDE, "extra"], max_columns=10_000) == (
        "The file has 10001 columns; at most 10000 are accepted (MODELYARD_MAX_CSV_COLUMNS).")


def test_a_dataset_profile_refuses_a_wide_header_before_reading_a_row():
    header = ",".join(f"c{i}" for i in range(20_001)).encode()
    started = time.perf_counter()
    with pytest.raises(ValidationFailed, match="20001 columns; at most 10000") as refused:
        profile_csv(io.BytesIO(header + b"\n" + b"1," * 20_000 + b"1\n"), max_columns=10_000)
    assert time.perf_counter() - started < 1
    assert list(refused.value.errors) == ["file"]
