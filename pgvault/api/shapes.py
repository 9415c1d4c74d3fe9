"""JSON shapes of every resource, as Azure returns them (camelCase, ARM envelope).

No secret value is ever rendered: secrets show their URI and attributes only;
storage accounts show settings without keys.
"""

from __future__ import annotations

import json
from typing import Any

from pgvault import (
    arm,
    instances,
    jobs,
    policies,
    recovery_points,
    retention,
    secrets,
    servers,
    tenancy,
    vaults,
)
from pgvault.clock import iso, timespan
from pgvault.errors import Code
from pgvault.services.crossregion import SecondaryInstance, SecondaryPoint
from pgvault.services.monitoring import JobRowView, JobView
from pgvault.services.protection import InstanceView
from pgvault.storage import accounts

DS_TYPE = policies.DATASOURCE_TYPE


def subscription(sub: tenancy.Subscription, tenant_id: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{sub.id}",
        "subscriptionId": sub.id,
        "tenantId": tenant_id,
        "displayName": sub.display_name,
        "state": "Enabled",
        "isDefault": sub.is_default,
    }


def group(g: tenancy.ResourceGroup) -> dict[str, Any]:
    return {
        "id": arm.rg_id(g.subscription_id, g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "properties": {"provisioningState": "Succeeded"},
    }


def server(sv: servers.Server) -> dict[str, Any]:
    return {
        "id": sv.arm_id,
        "name": sv.name,
        "type": "Microsoft.DBforPostgreSQL/servers",
        "location": sv.location,
        "properties": {
            "fullyQualifiedDomainName": sv.host,
            "port": sv.port,
            "sslMode": sv.sslmode,
            "sslRootCertificate": sv.ssl_root_cert,
            "passwordAuthentication": sv.password_authentication,
            "userVisibleState": "Ready",
            "provisioningState": "Succeeded",
        },
    }


def keyvault(kv: secrets.KeyVault, vault_base: str) -> dict[str, Any]:
    return {
        "id": kv.arm_id,
        "name": kv.name,
        "type": "Microsoft.KeyVault/vaults",
        "location": kv.location,
        "properties": {
            "vaultUri": f"{vault_base}/",
            "provisioningState": "Succeeded",
            "enableRbacAuthorization": True,
        },
    }


def secret(kv: secrets.KeyVault, row: secrets.SecretVersion, vault_base: str) -> dict[str, Any]:
    return {
        "id": f"{kv.arm_id}/secrets/{row.name}",
        "name": row.name,
        "type": "Microsoft.KeyVault/vaults/secrets",
        "location": kv.location,
        "properties": {
            "secretUri": secrets.secret_uri_at(vault_base, row.name),
            "secretUriWithVersion": secrets.secret_uri_at(vault_base, row.name, row.version),
            "contentType": row.content_type,
            "attributes": {
                "enabled": True,
                "created": int(row.created_at.timestamp()),
                "updated": int(row.created_at.timestamp()),
            },
        },
    }


def storage_account(a: accounts.StorageAccount, base_url: str) -> dict[str, Any]:
    return {
        "id": a.arm_id,
        "name": a.name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": a.location,
        "kind": "StorageV2",
        "properties": {
            "provisioningState": "Succeeded",
            "backend": {"type": a.kind, **a.settings, "hasKey": a.secret is not None},
            "primaryEndpoints": {"blob": accounts.blob_endpoint(base_url, a.name)},
        },
    }


def container(a: accounts.StorageAccount, c: accounts.Container, base_url: str) -> dict[str, Any]:
    return {
        "id": arm.container_id(a.subscription_id, a.resource_group, a.name, c.name),
        "name": c.name,
        "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
        "properties": {
            "url": accounts.blob_endpoint(base_url, a.name) + c.name,
            "lastModifiedTime": iso(c.created_at),
        },
    }


def vault(v: vaults.Vault) -> dict[str, Any]:
    return {
        "id": v.arm_id,
        "name": v.name,
        "type": "Microsoft.DataProtection/backupVaults",
        "location": v.location,
        "tags": v.tags or {},
        "identity": {
            "type": "SystemAssigned",
            "principalId": v.principal_id,
            "tenantId": v.subscription_id,
        },
        "properties": {
            **v.properties,
            "provisioningState": "Succeeded",
            "resourceMoveState": "Unknown",
            "isVaultProtectedByResourceGuard": False,
        },
    }


def policy(v: vaults.Vault, p: policies.Policy) -> dict[str, Any]:
    return {
        "id": f"{v.arm_id}/backupPolicies/{p.name}",
        "name": p.name,
        "type": "Microsoft.DataProtection/backupVaults/backupPolicies",
        "properties": {**p.properties, "summary": _summary(p)},
    }


def _summary(p: policies.Policy) -> str:

    try:
        return retention.describe_policy(p.properties)
    except Exception:  # an old or odd policy still shows; the summary is a convenience
        return ""


def instance(view: InstanceView) -> dict[str, Any]:
    inst, v, sv, p = view.instance, view.vault, view.server, view.policy
    return {
        "id": f"{v.arm_id}/backupInstances/{inst.name}",
        "name": inst.name,
        "type": "Microsoft.DataProtection/backupVaults/backupInstances",
        "properties": {
            "objectType": "BackupInstance",
            "friendlyName": instances.display_name(inst, sv.name),
            "dataSourceInfo": {
                "objectType": "Datasource",
                "resourceID": sv.database_id(inst.database),
                "resourceName": inst.database,
                "resourceType": DS_TYPE,
                "datasourceType": DS_TYPE,
                "resourceLocation": sv.location,
                "resourceUri": "",
            },
            "dataSourceSetInfo": {
                "objectType": "DatasourceSet",
                "resourceID": sv.arm_id,
                "resourceName": sv.name,
                "resourceType": "Microsoft.DBforPostgreSQL/servers",
                "datasourceType": DS_TYPE,
                "resourceLocation": sv.location,
                "resourceUri": "",
            },
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": inst.secret_uri},
            },
            "policyInfo": {
                "policyId": f"{v.arm_id}/backupPolicies/{p.name}",
                "policyVersion": str(p.version),
            },
            "protectionStatus": {"status": inst.protection_state},
            "currentProtectionState": inst.protection_state,
            "provisioningState": "Succeeded",
        },
    }


def deleted_instance(view: InstanceView) -> dict[str, Any]:
    body = instance(view)
    body["id"] = body["id"].replace("/backupInstances/", "/deletedBackupInstances/")
    body["type"] = "Microsoft.DataProtection/backupVaults/deletedBackupInstances"
    body["properties"]["objectType"] = "DeletedBackupInstance"
    body["properties"]["deletionInfo"] = {
        "deletionTime": iso(view.instance.deleted_at),
        "scheduledPurgeTime": iso(view.instance.purge_at),
        "billingEndDate": iso(view.instance.deleted_at),
    }
    return body


def _datastores(rp: recovery_points.RecoveryPoint, metadata: dict[str, Any]) -> list[Any]:
    """One entry per tier holding the point, with expiry and rehydration state."""
    entries = []
    meta = json.dumps(metadata, sort_keys=True)
    if rp.in_vault or rp.rehydrated_until is not None:
        entries.append(
            {
                "id": rp.id,
                "type": "VaultStore",
                "creationTime": iso(rp.created_at),
                "expiryTime": iso(rp.rehydrated_until if not rp.in_vault else rp.vault_expires_at),
                "metaData": meta,
                "visible": True,
                "state": "COMMITTED",
                "rehydrationExpiryTime": iso(rp.rehydrated_until),
                "rehydrationStatus": "COMPLETED" if rp.rehydrated_until else None,
            }
        )
    if rp.in_archive:
        entries.append(
            {
                "id": rp.id,
                "type": "ArchiveStore",
                "creationTime": iso(rp.archive_due_at),
                "expiryTime": iso(rp.archive_expires_at),
                "metaData": meta,
                "visible": True,
                "state": "COMMITTED",
            }
        )
    return entries


def recovery_point(view: InstanceView, rp: recovery_points.RecoveryPoint) -> dict[str, Any]:
    bi_id = f"{view.vault.arm_id}/backupInstances/{view.instance.name}"
    metadata = {k: v for k, v in rp.manifest.items() if k != "objects"}
    return {
        "id": f"{bi_id}/recoveryPoints/{rp.id}",
        "name": rp.id,
        "type": "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints",
        "properties": {
            "objectType": "AzureBackupDiscreteRecoveryPoint",
            "recoveryPointId": rp.id,
            "recoveryPointTime": iso(rp.created_at),
            "recoveryPointType": "Full",
            "friendlyName": rp.id,
            "policyName": rp.policy_name,
            "policyVersion": str(rp.policy_version) if rp.policy_version else None,
            "retentionTagName": rp.retention_tag,
            "retentionTagVersion": "1",
            "expiryTime": iso(rp.expires_at),
            "recoveryPointState": "Completed",
            "recoveryPointDataStoresDetails": _datastores(rp, metadata),
            "storedBytes": rp.stored_bytes,
            "archiveDueTime": iso(rp.archive_due_at),
            "dumpBytes": rp.dump_bytes,
        },
    }


def _error_details(job: jobs.Job | jobs.JobRow) -> list[dict[str, Any]] | None:
    if not job.error_code:
        return None
    code = Code.stored(job.error_code)
    return [
        {
            "code": code.value,
            "message": job.error_message,
            "recommendedAction": [job.recommended_action] if job.recommended_action else [],
            "isRetryable": False,
            "isUserError": code.startswith("UserError"),
        }
    ]


def job(view: JobView | JobRowView) -> dict[str, Any]:
    j, v, inst, sv, p = view.job, view.vault, view.instance, view.server, view.policy
    end = j.ended_at
    start = j.started_at or j.created_at
    duration = ((end or j.heartbeat_at or start) - start).total_seconds()
    params = j.params or {}
    result = j.result or {}
    percent = round(100.0 * j.bytes_done / j.bytes_total, 1) if j.bytes_total else None
    point_time = None
    if j.recovery_point_id and isinstance(result.get("recoveryPointTime"), str):
        point_time = result["recoveryPointTime"]
    props: dict[str, Any] = {
        "activityID": j.id,
        "backupInstanceFriendlyName": instances.display_name(inst, sv.name) if sv and inst else "",
        "backupInstanceId": f"{v.arm_id}/backupInstances/{inst.name}" if inst else None,
        "dataSourceId": sv.database_id(inst.database) if sv and inst else "",
        "dataSourceLocation": sv.location if sv else v.location,
        "dataSourceName": inst.database if inst else "",
        "dataSourceSetName": sv.name if sv else None,
        "dataSourceType": DS_TYPE,
        "operation": j.operation if j.operation != jobs.BACKUP else "Backup",
        "operationCategory": j.category,
        "policyId": f"{v.arm_id}/backupPolicies/{p.name}" if p else None,
        "policyName": p.name if p else None,
        "progressEnabled": True,
        "restoreType": params.get("restoreType"),
        "isUserTriggered": j.is_user_triggered,
        "sourceResourceGroup": v.resource_group,
        "sourceSubscriptionID": v.subscription_id,
        "subscriptionId": v.subscription_id,
        "vaultName": v.name,
        "status": j.status,
        "startTime": iso(start),
        "endTime": iso(end),
        "duration": timespan(duration),
        "errorDetails": _error_details(j),
        "supportedActions": [],
        "sourceDataStoreName": "VaultStore",
        "destinationDataStoreName": "VaultStore" if j.operation == jobs.BACKUP else None,
        "extendedInfo": {
            "additionalDetails": {
                "RetentionTag": str(result.get("retentionTag") or params.get("retentionTag", "")),
                "PolicyRuleName": str(params.get("ruleName", "")),
            },
            "subTasks": [
                {
                    "taskId": i,
                    "taskName": ph["name"],
                    "taskStatus": ph["status"],
                    "additionalDetails": {"start": ph.get("start", ""), "end": ph.get("end", "")},
                }
                for i, ph in enumerate(j.phases or [])
            ],
            "dataTransferredInBytes": result.get("dataTransferredInBytes", j.bytes_done),
            "recoveryDestination": result.get("recoveryDestination"),
            "sourceRecoverPoint": (
                {"recoveryPointID": j.recovery_point_id, "recoveryPointTime": point_time}
                if j.recovery_point_id
                else None
            ),
        },
        "progress": {
            "phase": j.phase,
            "bytesDone": j.bytes_done,
            "bytesTotal": j.bytes_total,
            "percent": percent,
        },
    }
    return {
        "id": f"{v.arm_id}/backupJobs/{j.id}",
        "name": j.id,
        "type": "Microsoft.DataProtection/Backupvaults/backupJobs",
        "properties": props,
    }


def operation_status(op: jobs.Operation, view: JobView | None, op_id_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": op_id_url,
        "name": op.id,
        "status": op.status,
        "startTime": iso(op.started_at),
        "endTime": iso(op.ended_at) or "0001-01-01T00:00:00Z",
    }
    if op.error:
        body["error"] = op.error
    if view is not None:
        body["properties"] = {
            "objectType": "OperationJobExtendedInfo",
            "jobId": f"{view.vault.arm_id}/backupJobs/{view.job.id}",
        }
    return body


def page(items: list[dict[str, Any]], next_link: str | None = None) -> dict[str, Any]:
    return {"value": items, "nextLink": next_link}


# -- cross-region restore ---------------------------------------------------------------------


def secondary_point(view: InstanceView, sp: SecondaryPoint) -> dict[str, Any]:
    """A recovery point as fetchSecondaryRecoveryPoints answers it: the point, with the
    secondary region's copy as its only data store (and the lag it saw)."""
    body = recovery_point(view, sp.point)
    replica = sp.replica
    metadata = {k: v for k, v in sp.point.manifest.items() if k != "objects"}
    body["properties"]["recoveryPointDataStoresDetails"] = [
        {
            "id": sp.point.id,
            "type": replica.tier,
            "creationTime": iso(replica.replicated_at),
            "expiryTime": iso(sp.point.expires_at),
            "metaData": json.dumps(metadata, sort_keys=True),
            "visible": True,
            "state": "COMMITTED",
            "rehydrationExpiryTime": None,
            "rehydrationStatus": None,
        }
    ]
    body["properties"]["region"] = replica.region
    body["properties"]["replicationLagSeconds"] = replica.lag_seconds
    return body


def secondary_instance(item: SecondaryInstance) -> dict[str, Any]:
    """A backup instance seen from its secondary region (pgvault extension: the portal's
    "Instance Region == Secondary Region" filter), with its replication lag."""
    body = instance(item.view)
    latest = item.latest
    body["properties"]["secondaryRegion"] = item.region
    body["properties"]["primaryRegion"] = item.view.vault.location
    body["properties"]["primaryDatastoreStatus"] = item.primary_status
    body["properties"]["replication"] = {
        **item.lag.to_dict(),
        "latestSecondaryRecoveryPoint": (
            {"recoveryPointId": latest.point.id, "recoveryPointTime": iso(latest.point.created_at)}
            if latest
            else None
        ),
    }
    return body
