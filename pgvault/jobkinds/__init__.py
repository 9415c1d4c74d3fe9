"""Job kinds: one module per operation behind one interface (`base.JobKind`).

The worker pool and the crash sweep find a kind only here. Adding an operation means
one new module and one line in `REGISTRY`.
"""

from __future__ import annotations

from pgvault.jobkinds.backup import Backup
from pgvault.jobkinds.base import JobKind
from pgvault.jobkinds.deletion import Deletion
from pgvault.jobkinds.rehydrate import Rehydrate
from pgvault.jobkinds.replicate import Replicate
from pgvault.jobkinds.restore import Restore
from pgvault.jobkinds.tiering import Tiering

REGISTRY: dict[str, JobKind] = {
    kind.operation: kind
    for kind in (Backup(), Restore(), Rehydrate(), Tiering(), Deletion(), Replicate())
}


def kind_for(operation: str) -> JobKind:
    """The kind that runs jobs of `operation` (KeyError naming it if none does)."""
    try:
        return REGISTRY[operation]
    except KeyError:
        raise KeyError(f"no job kind runs {operation!r} jobs") from None
