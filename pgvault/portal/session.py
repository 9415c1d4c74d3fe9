"""Who is signed in to the portal, what they may do, and the CSRF token of their forms.

The session cookie holds the bearer token the API's token endpoint would issue for the
same credentials (HttpOnly, SameSite=Strict, Secure under TLS), so the portal
authenticates and authorises exactly as the API does: `actions.requested` maps the ARM
path of what a page shows or a form changes to an action and scope, and the access
service checks the caller's roles. Signing out revokes the token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from fastapi import Request

from pgvault.api import actions
from pgvault.errors import Code, Forbidden, PgVaultError, Unauthorized
from pgvault.identity import Caller
from pgvault.services import Service

COOKIE = "pgvault_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class SignInNeeded(Exception):
    """No valid session: the page redirects to the sign-in form."""


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def csrf_for(svc: Service, token: str) -> str:
    """A form token bound to the session (an HMAC of it under the token-signing key)."""
    return hmac.new(svc.ctx.token_key, b"csrf|" + token.encode(), hashlib.sha256).hexdigest()


@dataclass
class Session:
    """The signed-in caller of one request, with permission checks shaped like API calls."""

    svc: Service
    caller: Caller
    token: str
    request: Request
    _seen: dict[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def csrf(self) -> str:
        return csrf_for(self.svc, self.token)

    def can(self, method: str, arm_path: str) -> bool:
        """Whether the API would let this caller send `method` to `arm_path`."""
        key = (method, arm_path)
        if key not in self._seen:
            try:
                self.require(method, arm_path, record=False)
                self._seen[key] = True
            except Forbidden:
                self._seen[key] = False
        return self._seen[key]

    def require(self, method: str, arm_path: str, *, record: bool = True) -> None:
        """403 (recorded in the audit log, as the API does) unless the caller may do it."""
        wanted = actions.requested(method, arm_path)
        if wanted.open:
            return
        try:
            self.svc.access.authorize(self.caller, wanted.action, wanted.scope)
        except Forbidden:
            if record:
                self.audit(method, arm_path, 403)
            raise

    def audit(self, method: str, arm_path: str, status: int, error: str | None = None) -> None:
        """Record a write (or a refusal) under the action the API would record."""
        wanted = actions.requested(method, arm_path)
        self.svc.access.record(self.caller, wanted.action, wanted.scope, method, status, error)

    def why_not(self, method: str, arm_path: str) -> str:
        """The reason a disabled button gives."""
        wanted = actions.requested(method, arm_path)
        return f"You need a role that allows {wanted.action} on this resource."


def mark_portal(request: Request) -> None:
    """Router dependency: errors of this request render as pages, audit is the portal's own."""
    request.state.portal = True


def current(request: Request) -> Session:
    """The signed-in session, or SignInNeeded (the page then redirects to /signin)."""
    svc = service(request)
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded()
    try:
        who = svc.access.authenticate(token)
    except (Unauthorized, PgVaultError) as exc:
        if isinstance(exc, Unauthorized) or exc.status == 401:
            raise SignInNeeded() from None
        raise
    request.state.caller = who
    return Session(svc, who, token, request)


async def checked(request: Request) -> Session:
    """A signed-in session whose form carries this session's CSRF token (every POST)."""
    session = current(request)
    form = await request.form()
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        session.audit(request.method, "/", 403, Code.CsrfTokenInvalid.value)
        raise Forbidden(
            "This form is missing its security token or the token is stale.",
            code=Code.CsrfTokenInvalid,
        )
    return session
