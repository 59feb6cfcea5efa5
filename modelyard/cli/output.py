"""How results are printed: `--output table` (aligned columns for people) or `--output json` (the server's
answers, for scripts)."""

from __future__ import annotations

import json
from typing import Any, Iterable

import click

from modelyard.client.results import Result


def emit(ctx: click.Context, results: Result | Iterable[Result], columns: list[str]) -> None:
    """Print one result (a table of field and value) or many (a row each), as the --output option says."""
    many = not isinstance(results, Result)
    if ctx.obj["output"] == "json":
        raws = [result.raw for result in results] if many else results.raw
        click.echo(json.dumps(raws, indent=2, default=str))
    elif many:
        click.echo(table([{column: getattr(result, column) for column in columns} for result in results], columns))
    else:
        click.echo(table([{"field": column, "value": getattr(results, column)} for column in columns],
                         ["field", "value"], header=False))


def table(rows: list[dict[str, Any]], columns: list[str], *, header: bool = True) -> str:
    """Columns padded to their widest cell; dicts and lists shown as compact JSON."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    if header:
        cells.insert(0, [column.upper() for column in columns])
    if not cells:
        return "(none)"
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)
