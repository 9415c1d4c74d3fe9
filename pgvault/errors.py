"""Errors with stable codes, shaped like Azure's CloudError.

Tree::

    PgVaultError                 code, message, recommended action, HTTP status
    ├── BadRequest (400)         invalid input at the edge; nothing changed
    │   └── UserError (400)      Azure's UserError* codes raised by validation
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    └── Conflict (409)

A job stores `code` and `message` of the error that ended it. Messages never
contain secrets: connection strings are parsed before any error can quote them.
"""

from __future__ import annotations

from typing import Any


class PgVaultError(Exception):
    """Base error: a stable `code`, a message that says what to do, an HTTP status."""

    status = 500
    default_code = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        recommended_action: str | None = None,
        target: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.recommended_action = recommended_action
        self.target = target
        self.retryable = retryable

    def to_body(self) -> dict[str, Any]:
        """The `{"error": {...}}` body Azure returns, with the UserFacingError detail."""
        info: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "recommendedAction": [self.recommended_action] if self.recommended_action else [],
            "target": self.target,
            "isRetryable": self.retryable,
            "isUserError": self.code.startswith("UserError"),
        }
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": self.target,
                "details": None,
                "additionalInfo": [{"type": "UserFacingError", "info": info}],
            }
        }


class BadRequest(PgVaultError):
    status = 400
    default_code = "BadRequest"


class UserError(BadRequest):
    """A check on the user's setup failed (secret, permissions, target database)."""

    default_code = "UserErrorGeneric"


class Unauthorized(PgVaultError):
    status = 401
    default_code = "AuthenticationFailed"


class Forbidden(PgVaultError):
    status = 403
    default_code = "AuthorizationFailed"


class NotFound(PgVaultError):
    status = 404
    default_code = "ResourceNotFound"


class Conflict(PgVaultError):
    status = 409
    default_code = "Conflict"


class ValidationFailed(UserError):
    """Several checks failed: the first gives the code, all are listed in `errors`/details."""

    def __init__(self, errors: list[PgVaultError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        super().__init__(
            first.message + more,
            code=first.code,
            recommended_action=first.recommended_action,
            target=first.target,
        )
        self.errors = errors

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        body["error"]["details"] = [e.to_body()["error"] for e in self.errors]
        return body
