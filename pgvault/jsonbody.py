"""Reading request bodies the way Azure does: keys and enum values case-insensitively."""

from __future__ import annotations

from typing import Any

from pgvault.errors import BadRequest, Code


def get(obj: Any, *path: str, default: Any = None) -> Any:
    """`obj[path[0]][path[1]]...`, matching each key case-insensitively."""
    cur = obj
    for key in path:
        if not isinstance(cur, dict):
            return default
        if key in cur:
            cur = cur[key]
            continue
        lowered = key.lower()
        for k, v in cur.items():
            if isinstance(k, str) and k.lower() == lowered:
                cur = v
                break
        else:
            return default
    return cur


def require(obj: Any, *path: str, kind: type = str) -> Any:
    """Like `get`, but a missing or mistyped value is a 400 naming the field."""
    value = get(obj, *path)
    if value is None or (kind is not object and not isinstance(value, kind)):
        raise BadRequest(
            f"The request body needs {'.'.join(path)} ({kind.__name__}).",
            code=Code.InvalidRequestContent,
            target=".".join(path),
        )
    return value


def same(value: Any, expected: str) -> bool:
    """Case-insensitive enum comparison."""
    return isinstance(value, str) and value.lower() == expected.lower()


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object.", code=Code.InvalidRequestContent)
    return value
