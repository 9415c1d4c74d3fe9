"""What every service area shares: the context, the worker pool to wake, the access service."""

from __future__ import annotations

from pgvault.context import Context
from pgvault.executors import Executor
from pgvault.services import startup
from pgvault.services.access import AccessService


class ServiceBase:
    """The state the service areas share; `Service` combines the areas over one of these.

    Each method of an area is short orchestration: open a metadata session, call the
    domain modules (which own the rules and the tables), return domain objects or small
    views of them. Shaping JSON is the API's job.
    """

    def __init__(self, ctx: Context, pool: Executor | None = None) -> None:
        self.ctx = ctx
        self.pool = pool
        self.access = AccessService(ctx)

    def bootstrap(self) -> str | None:
        """Prepare a fresh or existing installation; see `startup.bootstrap`."""
        return startup.bootstrap(self.ctx)

    def _notify(self) -> None:
        """Wake this process's executor after queueing a job, so it starts at once."""
        if self.pool is not None:
            self.pool.notify()
