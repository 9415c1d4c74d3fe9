"""Monitoring: backup jobs and the long-running operations the API reports on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from pgvault import instances, jobs, policies, servers, vaults
from pgvault.errors import PgVaultError
from pgvault.services.base import ServiceBase


@dataclass(frozen=True)
class JobView:
    """A job with the vault, instance, server and policy a response describes it by."""

    job: jobs.Job
    vault: vaults.Vault
    instance: instances.Instance | None
    server: servers.Server | None
    policy: policies.Policy | None


@dataclass(frozen=True)
class JobRowView:
    """A listed job (a plain row) with what it ran on, like `JobView`."""

    job: jobs.JobRow
    vault: vaults.Vault
    instance: instances.Instance | None
    server: servers.Server | None
    policy: policies.Policy | None


class MonitoringService(ServiceBase):
    """Jobs and operations: what ran, what runs, how it ended."""

    def _job_view(self, s: Session, job: jobs.Job) -> JobView:
        """The job with what it ran on, read in the caller's session."""
        vault = vaults.by_id(s, job.vault_id)
        if job.instance_id is None:
            return JobView(job, vault, None, None, None)
        inst = instances.by_id(s, job.instance_id)
        _, server, policy = instances.related(s, inst)
        return JobView(job, vault, inst, server, policy)

    def list_jobs(
        self, sub: str, rg: str | None, vault_name: str | None, limit: int = 200, offset: int = 0
    ) -> list[JobRowView]:
        with self.ctx.db.read() as s:
            if vault_name and rg:
                ids = [vaults.get(s, sub, rg, vault_name).id]
            else:
                ids = [v.id for v in vaults.list_vaults(s, sub, rg)]
            return self._row_views(s, jobs.list_rows(s, ids, limit, offset))

    def _row_views(self, s: Session, rows: list[jobs.JobRow]) -> list[JobRowView]:
        """Each row with its vault, instance, server and policy, read in a few IN queries
        for the whole page (not a lookup per row: on PostgreSQL each is a round trip)."""
        insts = instances.by_ids(s, (j.instance_id for j in rows if j.instance_id))
        listed = list(insts.values())
        related = dict(zip(insts, instances.related_many(s, listed), strict=True))
        known = {vault.id: vault for vault, _, _ in related.values()}
        known.update(vaults.by_ids(s, {j.vault_id for j in rows} - known.keys()))
        out = []
        for j in rows:
            if j.instance_id is None:
                out.append(JobRowView(j, known[j.vault_id], None, None, None))
            else:
                _, server, policy = related[j.instance_id]
                out.append(JobRowView(j, known[j.vault_id], insts[j.instance_id], server, policy))
        return out

    def find_jobs(
        self,
        vault_ids: list[str],
        *,
        limit: int = 200,
        operation: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        instance_id: str | None = None,
    ) -> list[JobView]:
        """The newest jobs across these vaults (the portal's Backup center and jobs pane)."""
        with self.ctx.db.read() as s:
            found = jobs.find(
                s,
                vault_ids,
                limit=limit,
                operation=operation,
                status=status,
                since=since,
                instance_id=instance_id,
            )
            return [self._job_view(s, j) for j in found]

    def job_status_counts(self, vault_ids: list[str], since: datetime) -> dict[str, int]:
        """Jobs of these vaults started since `since`, counted by status."""
        with self.ctx.db.read() as s:
            return jobs.status_counts(s, vault_ids, since)

    def job_status_windows(
        self, vault_ids: list[str], sinces: list[datetime]
    ) -> list[dict[str, int]]:
        """`job_status_counts` for several start times, in one query."""
        with self.ctx.db.read() as s:
            return jobs.status_counts_since(s, vault_ids, sinces)

    def get_job(self, sub: str, rg: str, vault_name: str, job_id: str) -> JobView:
        with self.ctx.db.read() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return self._job_view(s, jobs.get(s, job_id, vault.id))

    def record_operation(
        self,
        *,
        job_id: str | None = None,
        resource_id: str | None = None,
        error: PgVaultError | None = None,
    ) -> jobs.Operation:
        with self.ctx.db.session() as s:
            return jobs.new_operation(
                s, self.ctx.clock.now(), job_id=job_id, resource_id=resource_id, error=error
            )

    def get_operation(self, op_id: str) -> tuple[jobs.Operation, JobView | None]:
        with self.ctx.db.session() as s:
            op = jobs.get_operation(s, op_id)
            view = self._job_view(s, jobs.get(s, op.job_id)) if op.job_id else None
            return op, view
