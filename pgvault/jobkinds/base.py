"""The one interface every job kind implements, and the helpers the kinds share.

A kind is the unit of one operation (backup, restore, ...): its module holds the
checks, the queueing and the run. The worker pool and the crash sweep know kinds
only through this interface, so adding an operation adds one module and one
registry line, never a branch in the workers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from pgvault import connstr, jobs, secrets, servers
from pgvault.context import Context
from pgvault.crypto import Cipher
from pgvault.engine import pgtools
from pgvault.errors import Code, PgVaultError, UserError
from pgvault.progress import fail
from pgvault.recovery_points import RecoveryPoint


class JobKind(ABC):
    """What the workers need of a job kind: run a claimed job, clean up after a lost one."""

    operation: ClassVar[str]
    #: Phases in which a cancel is refused (a restore once its data transfer started).
    uncancellable_phases: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, ctx: Context, job_id: str) -> None:
        """A worker claimed the job: run it to Completed or Failed (never leave it running)."""

    def abandoned(self, ctx: Context, job: jobs.Job) -> None:
        """The job's worker died: remove what it left half-written (best effort, idempotent).

        Called with no metadata session open, before the sweep fails the job, so a
        sweep that dies in between cleans again next time. Default: nothing to remove.
        """
        return None

    def retry(self, s: Session, lost: jobs.Job, now: datetime) -> jobs.Job | None:
        """Queue a new attempt of `lost` (failed: its worker died), in the sweep's
        transaction, if this kind's rule retries it; None if not. Default: no retry."""
        return None


class RecordedKind(JobKind):
    """A kind whose jobs the housekeeping sweep writes already finished, in the transaction
    that records the work: they are never InProgress, so no worker claims or abandons one."""

    def run(self, ctx: Context, job_id: str) -> None:
        fail(
            ctx,
            job_id,
            PgVaultError(
                f"{self.operation} jobs are recorded finished by the housekeeping sweep; "
                "no worker runs one.",
                code=Code.InternalError,
            ),
        )


def endpoint(
    s: Session, cipher: Cipher, server: servers.Server, secret_uri: str
) -> pgtools.Endpoint:
    """Where and as whom to connect: a registered server plus the credentials of a secret.

    The one place an Endpoint is built. A secret's password goes only to the address the
    secret itself names: a secret without `Server=` is refused
    (UserErrorSecretServerNotNamed), and so is a server registered at another address
    (UserErrorSecretServerMismatch; host case-insensitive, no `Port=` means 5432), so
    whoever may re-point a registered server cannot re-point a password with it. The
    message names the server's address, never the secret's (its readers may not read
    secrets). The connection takes the stricter of the server's and the secret's sslmode,
    the server's root certificate and its allowed password exchange.

    Metadata only (the secret is decrypted, nothing is contacted), so it belongs in the
    short transaction that resolves a request; the connection comes after it closes.
    """
    creds = connstr.parse(secrets.resolve(s, cipher, secret_uri))
    if not creds.host:
        raise UserError(
            "The key-vault secret does not name the server its password is for (no "
            "'Server=' or URI host); pgvault sends a password only to the server its secret "
            "names.",
            code=Code.UserErrorSecretServerNotNamed,
        )
    if not connstr.same_address(creds.host, creds.port, server.host, server.port):
        raise UserError(
            f"Server {server.name!r} is registered at {servers.address_of(server)}, which is "
            "not the address its key-vault secret names; pgvault sends the secret's password "
            "only to that address.",
            code=Code.UserErrorSecretServerMismatch,
        )
    return pgtools.Endpoint(
        server.host,
        server.port,
        creds,
        sslmode=connstr.stricter_sslmode(server.sslmode, creds.sslmode),
        root_cert=server.ssl_root_cert,
        password_auth=server.password_authentication,
    )


def housekeeping_job(
    s: Session, point: RecoveryPoint, operation: str, now: datetime, details: dict[str, Any]
) -> jobs.Job:
    """A job record for housekeeping work; callers finish it in the same transaction, so it
    is never seen InProgress: no worker claims it, and a crash leaves no orphan behind."""
    job = jobs.create(
        s,
        vault_id=point.vault_id,
        instance_id=point.instance_id,
        operation=operation,
        params=details,
        now=now,
        recovery_point_id=point.id,
    )
    job.is_user_triggered = False
    job.started_at = now
    return job
