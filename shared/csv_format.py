"""What a CSV means wherever the platform reads one: the registry profiles uploads without pandas,
the training service validates a request's data without pandas, and the workers read it with pandas;
all three must agree on which fields are missing values.
"""

from __future__ import annotations

# pandas' default missing-value spellings (pandas._libs.parsers.STR_NA_VALUES), compared case-insensitively.
NULL_TOKENS = frozenset({
    "", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>", "n/a", "na",
    "null", "nan", "none",
})
