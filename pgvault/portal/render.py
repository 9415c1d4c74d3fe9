"""Templates (Jinja2, htmx partials by block with jinja2-fragments) and small display helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from jinja2_fragments.fastapi import Jinja2Blocks

from pgvault.errors import PgVaultError

HERE = Path(__file__).parent
templates = Jinja2Blocks(directory=str(HERE / "templates"))


def size(n: int | None) -> str:
    """Bytes in the unit a person reads (1.5 MiB)."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def when(t: datetime | None) -> str:
    """A UTC time as the portal shows it (ISO, to the second)."""
    if t is None:
        return "—"
    aware = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(t: float | None) -> str:
    """A duration in words a person reads (1 min 5 s)."""
    if t is None:
        return "—"
    whole = round(t)
    if whole < 60:
        return f"{t:.1f} s" if t < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


templates.env.filters["size"] = size
templates.env.filters["when"] = when
templates.env.filters["seconds"] = seconds


def page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    block: str | None = None,
) -> Response:
    """Render a template; an htmx request for a named block gets only that block."""
    if block is None and request.headers.get("hx-request") == "true":
        block = request.headers.get("hx-target-block") or None
    ctx = {"request": request, **context}
    if block:
        return templates.TemplateResponse(request, name, ctx, status_code=status, block_name=block)
    return templates.TemplateResponse(request, name, ctx, status_code=status)


def error_page(request: Request, exc: PgVaultError, session: Any = None) -> Response:
    """An error as a page: its code, what happened, and what to do."""
    details = list(getattr(exc, "errors", None) or [exc])
    return page(
        request,
        "error.html",
        {"error": exc, "details": details, "session": session, "crumbs": []},
        status=exc.status,
    )
