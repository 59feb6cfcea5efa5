"""What a CSV means wherever the platform reads one: the registry profiles uploads without pandas,
the training service validates a request's data without pandas, and the workers read it with pandas;
all three must agree on which fields are missing values and which headers are refused.
"""

from __future__ import annotations

# pandas' default missing-value spellings (pandas._libs.parsers.STR_NA_VALUES), compared case-insensitively.
NULL_TOKENS = frozenset({
    "", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>", "n/a", "na",
    "null", "nan", "none",
})


def header_problem(names: list[str], *, max_columns: int) -> str | None:
    """Why a header row cannot name a table's columns (more than `max_columns`, or a name twice), else None.

    A header is untrusted input: one line of a 9 MiB upload can name a million columns. The count is
    checked first and the repeats in one pass, so the cost is linear in the line's length.
    """
    if len(names) > max_columns:
        return (f"The file has {len(names)} columns; at most {max_columns} are accepted "
                "(MODELYARD_MAX_CSV_COLUMNS).")
    seen: set[str] = set()
    repeated: set[str] = set()
    for name in names:
        (repeated if name in seen else seen).add(name)
    if repeated:
        return f"Column names repeat: {', '.join(sorted(repeated))}."
    return None
