"""The access service: sign-in, tokens, principals, roles, assignments, authorization, audit.

`Service` (the backup service) holds one as `service.access` and the API uses it; nothing
here knows about HTTP.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pgvault import access_epoch, audit, identity, rbac, tenancy, vaults
from pgvault.context import Context
from pgvault.errors import BadRequest, Code, Forbidden, Unauthorized
from pgvault.identity import Caller, Principal

ROOT = "/"
#: Cached answers kept per epoch (the cache is emptied when it is full or the epoch moves).
CACHE_LIMIT = 10_000


class _EpochCache:
    """Answers read at one access epoch (see `pgvault.access_epoch`); they hold until it moves.

    A request writes its answers only into the cache of the epoch it read, so an answer read
    before a change can never be served after it."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.callers: dict[str, Caller] = {}
        self.allowed: dict[tuple[str, str, str], bool] = {}

    def full(self) -> bool:
        return len(self.callers) + len(self.allowed) > CACHE_LIMIT


@dataclass(frozen=True)
class SignIn:
    """A sign-in's tokens and who they name, for the OpenID Connect token endpoints."""

    principal: Principal
    access_token: str
    expires_in: int
    refresh_token: str
    tenant_id: str


class AccessService:
    """Who may call, and what they may do: every identity and RBAC operation the API offers."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._cache = _EpochCache(-1)

    # -- sign-in and tokens -----------------------------------------------------------------

    def token_for_client(self, client_id: str, client_secret: str) -> tuple[str, int]:
        return self._sign_in(
            "client", client_id, lambda s: identity.authenticate_client(s, client_id, client_secret)
        )

    def token_for_user(self, username: str, password: str) -> tuple[str, int]:
        return self._sign_in(
            "user", username, lambda s: identity.authenticate_user(s, username, password)
        )

    def sign_in_oidc(self, grant: str, name: str, secret: str) -> SignIn:
        """An OAuth sign-in as az/MSAL makes it (grant client_credentials or password): the
        same checks and lockout as `token_for_*`, plus a refresh token and who signed in."""
        check: Any
        if grant == "client_credentials":
            kind = "client"
            check = partial(identity.authenticate_client, client_id=name, client_secret=secret)
        else:
            kind = "user"
            check = partial(identity.authenticate_user, username=name, password=secret)
        access, lifetime, principal = self._check_and_issue(kind, name, check)
        return self._with_refresh(principal, access, lifetime)

    def refresh(self, token: str) -> SignIn:
        """New tokens for a refresh token (which is then revoked: each is used once), while
        its principal exists, is enabled, and the token is not revoked."""
        now = self.ctx.clock.now()
        claims = identity.verify_token(self.ctx.token_key, token, now)
        if claims.get("use") != identity.REFRESH:
            raise Unauthorized(
                "Not a refresh token. Sign in again.", code=Code.InvalidAuthenticationToken
            )
        with self.ctx.db.session() as s:
            caller = identity.caller_for(s, claims)
            principal = identity.get_principal(s, caller.principal_id)
            identity.revoke(s, claims)
        lifetime = self.ctx.settings.token_lifetime_seconds
        access = identity.issue_token(self.ctx.token_key, principal, now, lifetime)
        return self._with_refresh(principal, access, lifetime)

    def _with_refresh(self, principal: Principal, access: str, lifetime: int) -> SignIn:
        refresh = identity.issue_token(
            self.ctx.token_key,
            principal,
            self.ctx.clock.now(),
            identity.REFRESH_LIFETIME,
            use=identity.REFRESH,
        )
        return SignIn(principal, access, lifetime, refresh, self.tenant_id())

    def tenant_id(self) -> str:
        with self.ctx.db.session() as s:
            return tenancy.tenant_id(s)

    def _sign_in(self, kind: str, name: str, check: Any) -> tuple[str, int]:
        token, lifetime, _ = self._check_and_issue(kind, name, check)
        return token, lifetime

    def _check_and_issue(self, kind: str, name: str, check: Any) -> tuple[str, int, Principal]:
        """Check credentials with lockout: the attempt is counted (atomically, in its own
        transaction) before the password is checked, and settled after."""
        now, key = self.ctx.clock.now(), identity.lock_key(kind, name)
        with self.ctx.db.session() as s:
            identity.take_attempt(s, key, now)
        error: Unauthorized | None = None
        with self.ctx.db.session() as s:
            try:
                principal: Principal = check(s)
            except Unauthorized as exc:
                error = exc
        with self.ctx.db.session() as s:
            identity.finish_attempt(s, key, error is None, self.ctx.clock.now())
        if error is not None:
            raise error
        lifetime = self.ctx.settings.token_lifetime_seconds
        token = identity.issue_token(self.ctx.token_key, principal, now, lifetime)
        return token, lifetime, principal

    def authenticate(self, token: str) -> Caller:
        return self.check(token, None, ROOT)

    def check(self, token: str, action: str | None, scope: str) -> Caller:
        """Who `token` names, and (unless `action` is None) that they may do `action` at
        `scope`: one metadata query (the access epoch) when the answers are cached."""
        claims = identity.verify_access_token(self.ctx.token_key, token, self.ctx.clock.now())
        key = token  # the whole signed token: its claims are what was verified
        with self.ctx.db.read_connection() as conn:  # no ORM session for the one cheap read
            cache = self._cache_at(access_epoch.read(conn))
        caller = cache.callers.get(key)
        wanted = (caller.principal_id, action, scope) if caller and action else None
        allowed = cache.allowed.get(wanted) if wanted else None
        if caller is None or (action is not None and allowed is None):
            # Read now, at the epoch read above or a later one: never staler than its tag.
            with self.ctx.db.session() as s:
                if caller is None:
                    caller = identity.caller_for(s, claims)
                    cache.callers[key] = caller
                if action is not None:
                    allowed = rbac.is_allowed(s, caller.principal_id, action, scope)
                    cache.allowed[(caller.principal_id, action, scope)] = allowed
        if action is None:
            return caller
        if not allowed:
            raise self._denied(caller, action, scope)
        return caller

    def _cache_at(self, epoch: int) -> _EpochCache:
        cache = self._cache
        if cache.epoch != epoch or cache.full():
            cache = self._cache = _EpochCache(epoch)
        return cache

    def revoke(self, token: str) -> None:
        claims = identity.verify_token(self.ctx.token_key, token, self.ctx.clock.now())
        with self.ctx.db.session() as s:
            identity.revoke(s, claims)

    # -- authorization ----------------------------------------------------------------------

    def allowed(self, caller: Caller, action: str, scope: str) -> bool:
        """Whether a role assigned at or above `scope` grants `action` (no error, no audit)."""
        with self.ctx.db.session() as s:
            return rbac.is_allowed(s, caller.principal_id, action, scope)

    def allowed_data(self, caller: Caller, action: str, scope: str) -> bool:
        """Whether a role at or above `scope` grants the data action (e.g. getSecret)."""
        with self.ctx.db.session() as s:
            return rbac.is_allowed(s, caller.principal_id, action, scope, data=True)

    def authorize(self, caller: Caller, action: str, scope: str) -> None:
        """403 naming the missing action unless a role assigned at or above `scope` grants it."""
        with self.ctx.db.session() as s:
            if rbac.is_allowed(s, caller.principal_id, action, scope):
                return
        raise self._denied(caller, action, scope)

    @staticmethod
    def _denied(caller: Caller, action: str, scope: str) -> Forbidden:
        return Forbidden(
            f"The client '{caller.name}' with object id '{caller.principal_id}' does not have "
            f"authorization to perform action '{action}' over scope '{scope}'.",
            code=Code.AuthorizationFailed,
            recommended_action="Ask an Owner to assign you a role that includes this action, "
            f'e.g.: pgvault role assignment create --assignee {caller.name} --role "ROLE" '
            f"--scope {scope}",
            target=action,
        )

    # -- principals -------------------------------------------------------------------------

    def create_principal(self, name: str, type_: str) -> tuple[Principal, str | None]:
        kinds = {
            "user": identity.USER,
            "service-principal": identity.SERVICE_PRINCIPAL,
            "serviceprincipal": identity.SERVICE_PRINCIPAL,
        }
        kind = kinds.get(str(type_).lower())
        if kind is None:
            raise BadRequest(
                "A principal's type is 'user' or 'service-principal'.", code=Code.BadParameter
            )
        with self.ctx.db.session() as s:
            return identity.create_principal(s, name, kind, self.ctx.clock.now())

    def list_principals(self) -> list[Principal]:
        with self.ctx.db.session() as s:
            return identity.list_principals(s)

    def get_principal(self, ref: str) -> Principal:
        with self.ctx.db.session() as s:
            return identity.find_principal(s, ref)

    def delete_principal(self, ref: str) -> None:
        with self.ctx.db.session() as s:
            p = identity.find_principal(s, ref)
            identity.check_deletable(p)
            rbac.remove_assignments_of(s, p.id)
            identity.delete_principal(s, p.id)

    def resolve_assignee(self, ref: str) -> Principal:
        """A principal by id, client id, name, or `vault:NAME` (a vault's managed identity)."""
        with self.ctx.db.session() as s:
            if ref.lower().startswith("vault:"):
                vault = vaults.unique_by_name(s, ref.split(":", 1)[1])
                return identity.get_principal(s, vault.principal_id)
            return identity.find_principal(s, ref)

    # -- roles and assignments --------------------------------------------------------------

    def roles(self) -> list[rbac.Role]:
        with self.ctx.db.session() as s:
            return rbac.all_roles(s)

    def role(self, ref: str) -> rbac.Role:
        with self.ctx.db.session() as s:
            return rbac.find_role(s, ref)

    def put_custom_role(
        self, role_id: str, name: str, description: str, permissions: dict[str, Any]
    ) -> rbac.Role:
        with self.ctx.db.session() as s:
            return rbac.put_custom_role(
                s, role_id, name, description, permissions, self.ctx.clock.now()
            )

    def create_assignment(
        self,
        caller: Caller | None,
        scope: str,
        role_ref: str,
        principal_ref: str,
        assignment_id: str | None = None,
    ) -> rbac.Assignment:
        principal = self.resolve_assignee(principal_ref)
        with self.ctx.db.session() as s:
            role = rbac.find_role(s, role_ref)
            return rbac.assign(
                s,
                scope=scope,
                role=role,
                principal_id=principal.id,
                principal_type=principal.type,
                now=self.ctx.clock.now(),
                created_by=caller.principal_id if caller else None,
                assignment_id=assignment_id or str(uuid.uuid4()),
            )

    def list_assignments(
        self, scope: str | None, principal_ref: str | None = None, at_scope_only: bool = False
    ) -> list[rbac.Assignment]:
        principal_id = self.resolve_assignee(principal_ref).id if principal_ref else None
        with self.ctx.db.session() as s:
            return rbac.list_assignments(s, scope, principal_id, at_scope_only)

    def assignment_exists(self, assignment_id: str) -> bool:
        """Whether a PUT of this id updates (200) rather than creates (201), as ARM answers."""
        with self.ctx.db.session() as s:
            return s.get(rbac.Assignment, assignment_id) is not None

    def get_assignment(self, assignment_id: str) -> rbac.Assignment:
        with self.ctx.db.session() as s:
            return rbac.get_assignment(s, assignment_id)

    def delete_assignment(self, assignment_id: str) -> rbac.Assignment:
        with self.ctx.db.session() as s:
            return rbac.delete_assignment(s, assignment_id)

    # -- audit ------------------------------------------------------------------------------

    def record(
        self,
        caller: Caller | None,
        action: str,
        scope: str,
        method: str,
        status: int,
        error_code: str | None,
    ) -> None:
        self.record_many([(caller, action, scope, method, status, error_code)])

    def record_many(
        self, entries: list[tuple[Caller | None, str, str, str, int, str | None]]
    ) -> None:
        """Audit rows (caller, action, scope, method, status, error code) in one transaction:
        the API's group commit writes the calls that arrived together at once."""
        coalesce = timedelta(seconds=self.ctx.settings.audit_coalesce_seconds)
        with self.ctx.db.session() as s:
            for caller, action, scope, method, status, error_code in entries:
                audit.record(
                    s,
                    at=self.ctx.clock.now(),
                    principal_id=caller.principal_id if caller else None,
                    principal_name=caller.name if caller else None,
                    action=action,
                    scope=scope,
                    method=method,
                    status=status,
                    error_code=error_code,
                    coalesce=coalesce,
                )

    def audit_events(
        self,
        scope_prefix: str | None,
        since: datetime | None = None,
        outcome: str | None = None,
        limit: int = 500,
    ) -> list[audit.AuditEvent]:
        with self.ctx.db.session() as s:
            return audit.query(
                s, scope_prefix=scope_prefix, since=since, outcome=outcome, limit=limit
            )
