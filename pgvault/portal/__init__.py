"""The web portal: the third face over the service layer, mounted by `pgvault serve` at `/`.

Jinja2 templates with htmx (vendored under `static/`, no CDN, no build step); the same
authorisation as the API (`session.Session`), the same request bodies (`pgvault.schemas`).
`mount` adds the pages, the static files and HTML error pages for portal requests to the
API's app; the API's paths and JSON errors stay as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from pgvault.errors import BadRequest, Code, PgVaultError
from pgvault.portal import manage, protect, register, routes, secondary, wizard
from pgvault.portal.render import HERE, error_page
from pgvault.portal.session import SignInNeeded, current

__all__ = ["mount"]


def _session_or_none(request: Request) -> object:
    try:
        return current(request)
    except (SignInNeeded, PgVaultError):
        return None


async def _answer(result: Response | Awaitable[Response]) -> Response:
    """The API's own handler's answer (its handlers are async; Starlette allows either)."""
    return await result if inspect.isawaitable(result) else result


def mount(app: FastAPI) -> None:
    """Add the portal to the API's app (the API keeps its paths and its JSON errors)."""
    app.include_router(routes.router)
    app.include_router(wizard.router)
    app.include_router(manage.router)
    app.include_router(protect.router)
    app.include_router(secondary.router)
    app.include_router(register.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="portal-static")
    api_error = app.exception_handlers[PgVaultError]
    api_validation = app.exception_handlers[RequestValidationError]

    async def signin_needed(request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)

    async def portal_error(request: Request, exc: Exception) -> Response:
        if getattr(request.state, "portal", False) and isinstance(exc, PgVaultError):
            return error_page(request, exc, _session_or_none(request))
        return await _answer(api_error(request, exc))

    async def portal_validation(request: Request, exc: Exception) -> Response:
        if getattr(request.state, "portal", False) and isinstance(exc, RequestValidationError):
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
            error = BadRequest(
                f"The form field {where!r} is missing or invalid: {first.get('msg', '')}.",
                code=Code.BadParameter,
            )
            return error_page(request, error, _session_or_none(request))
        return await _answer(api_validation(request, exc))

    app.add_exception_handler(SignInNeeded, signin_needed)
    app.add_exception_handler(PgVaultError, portal_error)
    app.add_exception_handler(RequestValidationError, portal_validation)
