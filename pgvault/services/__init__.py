"""The service layer: every operation the API, the CLI (through the API) and the portal use.

Split by area (resources, protection, recovery, monitoring; access and start-up apart);
`Service` is their union, the one object the faces hold. It adds nothing of its own.
"""

from __future__ import annotations

from pgvault.instances import InstanceSpec
from pgvault.services.crossregion import CrossRegionService
from pgvault.services.monitoring import MonitoringService
from pgvault.services.protection import ProtectionService
from pgvault.services.recovery import RecoveryService
from pgvault.services.resources import ResourceService

__all__ = ["InstanceSpec", "Service"]


class Service(
    ResourceService, ProtectionService, RecoveryService, CrossRegionService, MonitoringService
):
    """Operations over resources, vaults, instances, recovery points, restores and jobs."""
