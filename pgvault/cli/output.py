"""What the CLI prints, as `az` does: `--output json|jsonc|table|tsv|yaml|none`, `--query`.

The query (JMESPath) applies to the command's result; for a list (`{value: [...]}`) that is
the list itself, the rows the table shows. Without a query, `json` prints the API's answer
unchanged and `table` a readable Rich view whose id and name columns are never cut.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import jmespath
import yaml
from jmespath.exceptions import JMESPathError
from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Columns = Sequence[tuple[str, str]]
"""(title, path) pairs: the table's columns, or the lines of one resource."""

#: Fields a user copies into the next command: their table columns are never cut.
_COPYABLE = {"name", "id", "url", "blob"}
#: A copyable column this short stays on one line (longer ones fold onto the next lines).
_ONE_LINE_MAX = 48


class Output(StrEnum):
    json = "json"
    jsonc = "jsonc"
    table = "table"
    tsv = "tsv"
    yaml = "yaml"
    none = "none"


class QueryError(ValueError):
    """A `--query` that is not a JMESPath expression (a usage error)."""


def compile_query(expression: str | None) -> Any:
    """The compiled JMESPath expression, or None; QueryError names what is wrong."""
    if expression is None:
        return None
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise QueryError(f"--query {expression!r} is not a JMESPath expression: {exc}") from None


def is_list(data: Any) -> bool:
    """A list answer: `{value: [...]}` with at most a `nextLink` beside it."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("value"), list)
        and set(data) <= {"value", "nextLink"}
    )


def show(data: Any, fmt: Output, columns: Columns | None = None, query: Any | None = None) -> None:
    """Print one resource or a `{value: [...]}` list the way `--output` and `--query` ask."""
    if fmt == Output.none:
        return
    if query is not None:
        _show_plain(query.search(data["value"] if is_list(data) else data), fmt)
        return
    if fmt == Output.table:
        _table(data, columns or [("Name", "name"), ("Id", "id")])
    elif fmt == Output.tsv:
        _show_plain(data["value"] if is_list(data) else data, fmt)
    else:
        _show_plain(data, fmt)


def _show_plain(data: Any, fmt: Output) -> None:
    """A value in one of the formats that do not know the command's columns."""
    if fmt == Output.json:
        out.print_json(json.dumps(data)) if out.is_terminal else print(json.dumps(data, indent=2))
    elif fmt == Output.jsonc:
        Console(force_terminal=True, soft_wrap=True).print_json(json.dumps(data))
    elif fmt == Output.yaml:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    elif fmt == Output.tsv:
        for row in data if isinstance(data, list) else [data]:
            print("\t".join(_tsv_row(row)))
    elif fmt == Output.table:
        _query_table(data)


def _tsv_row(row: Any) -> list[str]:
    """az's rules: a dict's values in order, a list's items, nested objects skipped."""
    values = row.values() if isinstance(row, dict) else row if isinstance(row, list) else [row]
    return [_scalar(v) for v in values if not isinstance(v, dict | list)]


def _scalar(value: Any) -> str:
    return "" if value is None else str(value)


def _query_table(data: Any) -> None:
    """A query's result as a table: keys as columns (nested objects skipped), as az does."""
    rows = data if isinstance(data, list) else [data]
    if not any(isinstance(r, dict) for r in rows):
        columns: list[tuple[str, str]] = [("Result", "")]
        records = [{"": r} for r in rows]
    else:
        keys: dict[str, None] = {}
        for r in rows:
            if isinstance(r, dict):
                keys.update({k: None for k, v in r.items() if not isinstance(v, dict | list)})
        columns = [(k[:1].upper() + k[1:], k) for k in keys]
        records = [r if isinstance(r, dict) else {} for r in rows]
    table = Table()
    for title, _ in columns:
        table.add_column(title, overflow="fold")
    for r in records:
        table.add_row(*[_scalar(r.get(key)) for _, key in columns])
    out.print(table)


def _table(data: Any, cols: Columns) -> None:
    items = data.get("value") if isinstance(data, dict) and "value" in data else None
    if items is None:
        for title, path in cols:
            out.print(f"[bold]{title}:[/bold] {_text(pick(data, path))}")
        return
    rows = [[_text(pick(item, path)) for _, path in cols] for item in items]
    longest = [max([len(title), *(len(r[i]) for r in rows)]) for i, (title, _) in enumerate(cols)]
    copyable = [_copyable(path) for _, path in cols]
    # Copyable columns (point, job, principal ids, names) stay on one line while they fit side
    # by side, leaving the other columns room to wrap around them; a copyable value that does
    # not fit folds onto the next lines: all of it is shown, nothing is cut.
    one_line = [False] * len(cols)
    room = out.width - 1 - 6 * len(cols)
    for i, n in enumerate(longest):
        if copyable[i] and n <= _ONE_LINE_MAX and n - 3 <= room:
            one_line[i], room = True, room - (n - 3)
    table = Table(show_lines=False)
    for (title, _), keep, fold, n in zip(cols, one_line, copyable, longest, strict=True):
        if keep:
            table.add_column(title, no_wrap=True, min_width=n, overflow="fold")
        else:
            table.add_column(title, overflow="fold" if fold else "ellipsis")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _copyable(path: str) -> bool:
    """A column a user copies from: names, ids (`…Id`), URIs and URLs."""
    last = path.rsplit(".", 1)[-1]
    return last in _COPYABLE or last.endswith(("Id", "Uri", "UriWithVersion"))


def pick(obj: Any, path: str) -> Any:
    """Walk `a.b.0.c`: keys into objects, numbers into lists."""
    for key in path.split("."):
        if isinstance(obj, list) and key.isdigit():
            obj = obj[int(key)] if int(key) < len(obj) else None
        elif isinstance(obj, dict):
            obj = obj.get(key)
        else:
            return None
    return obj


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
