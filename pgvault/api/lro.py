"""The 202 answer of every long-running operation, built in one place."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response

from pgvault.api.deps import accepted
from pgvault.errors import UserError
from pgvault.services import Service


def start(
    request: Request,
    svc: Service,
    scope_id: str,
    action: Callable[[], str | None],
    *,
    failures_in_operation: bool = False,
) -> Response:
    """Run `action` (it returns the job it queued, or None when it is done) and answer 202
    with an operation that follows that job.

    With `failures_in_operation`, a UserError becomes a Failed operation, as Azure reports a
    validation or restore it refused; otherwise it is the call's own 400.
    """
    try:
        job_id = action()
    except UserError as exc:
        if not failures_in_operation:
            raise
        op = svc.record_operation(error=exc)
    else:
        op = svc.record_operation(job_id=job_id)
    return accepted(request, scope_id, op.id)
