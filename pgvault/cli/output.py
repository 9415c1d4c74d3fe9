"""What the CLI prints: the API's JSON (`--output json`) or a readable Rich view."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Columns = Sequence[tuple[str, str]]
"""(title, path) pairs: the table's columns, or the lines of one resource."""


class Output(StrEnum):
    table = "table"
    json = "json"


def show(data: Any, fmt: Output, columns: Columns | None = None) -> None:
    """Print one resource or a `{value: [...]}` list."""
    if fmt == Output.json:
        out.print_json(json.dumps(data)) if out.is_terminal else print(json.dumps(data, indent=2))
        return
    items = data.get("value") if isinstance(data, dict) and "value" in data else None
    if items is not None:
        table = Table(show_lines=False)
        cols = columns or [("Name", "name"), ("Id", "id")]
        for title, _ in cols:
            table.add_column(title)
        for item in items:
            table.add_row(*[_text(pick(item, path)) for _, path in cols])
        out.print(table)
        return
    cols = columns or [("Name", "name"), ("Id", "id")]
    for title, path in cols:
        out.print(f"[bold]{title}:[/bold] {_text(pick(data, path))}")


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
