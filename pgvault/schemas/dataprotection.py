"""Microsoft.DataProtection request bodies: vaults, policies, instances, backups, restores.

Shaped like Azure's (the azure-mgmt-dataprotection SDK sends these); each converts to what
the service takes. Rules that depend on other state (a policy's rules, a target's server)
stay in the domain modules; these models check shapes and what one body alone can tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, TypeVar

from pydantic import BeforeValidator, Field, JsonValue, field_validator, model_validator

from pgvault import arm
from pgvault.errors import BadRequest, Code
from pgvault.instances import InstanceSpec
from pgvault.jobkinds import restore
from pgvault.jobkinds.restore import DatabaseTarget, FilesTarget, RestoreRequest
from pgvault.schemas.base import INVALID, AzureModel, Number, Present, lookup, parse, user_error

T = TypeVar("T")

# -- vaults ---------------------------------------------------------------------------------
# The settings of vaults.DEFAULT_PROPERTIES, each optional (a PUT merges into what is stored)
# but never null, and never of another JSON type than its default.


class StateSetting(AzureModel):
    state: Present[str] = None


class StorageSetting(AzureModel):
    datastore_type: Present[str] = None
    type: Present[str] = None


class SoftDeleteSettings(AzureModel):
    state: Present[str] = None
    retention_duration_in_days: Present[Number] = None


class SecuritySettings(AzureModel):
    soft_delete_settings: Present[SoftDeleteSettings] = None
    immutability_settings: Present[StateSetting] = None


class FeatureSettings(AzureModel):
    cross_region_restore_settings: Present[StateSetting] = None
    cross_subscription_restore_settings: Present[StateSetting] = None


class AlertSettings(AzureModel):
    alerts_for_all_job_failures: Present[str] = None


class MonitoringSettings(AzureModel):
    azure_monitor_alert_settings: Present[AlertSettings] = None


class VaultProperties(AzureModel):
    storage_settings: Present[list[StorageSetting]] = None
    security_settings: Present[SecuritySettings] = None
    feature_settings: Present[FeatureSettings] = None
    monitoring_settings: Present[MonitoringSettings] = None


class VaultPatch(AzureModel):
    """PATCH of a vault: the settings and tags to change."""

    properties: VaultProperties | None = None
    tags: dict[str, JsonValue] | None = None

    def settings(self) -> dict[str, JsonValue]:
        """The settings sent, under Azure's names (only those sent: the rest is kept)."""
        if self.properties is None:
            return {}
        return self.properties.model_dump(by_alias=True, exclude_unset=True)

    def tag_map(self) -> dict[str, JsonValue]:
        return dict(self.tags or {})


class VaultBody(VaultPatch):
    """PUT of a vault (BackupVaultResource)."""

    location: str


# -- policies -------------------------------------------------------------------------------


class NotificationProperties(AzureModel):
    """A vault's alert destinations (pgvault extension): Apprise URLs, secrets."""

    urls: list[str] = Field(default_factory=list, max_length=20)


class NotificationBody(AzureModel):
    """PUT of a vault's notificationSettings/default: the whole URL list (empty: none)."""

    properties: NotificationProperties = Field(default_factory=NotificationProperties)


class PolicyBody(AzureModel):
    """PUT of a policy (BaseBackupPolicyResource).

    The rules stay JSON here: `pgvault.retention` reads them the way Azure does and answers
    with Azure's specific codes for each mistake.
    """

    properties: dict[str, JsonValue] | None = None

    def rules(self) -> dict[str, JsonValue]:
        return dict(self.properties or {})


# -- backup instances -----------------------------------------------------------------------


class SecretStoreResource(AzureModel):
    uri: str
    secret_store_type: str | None = None


class AuthCredentials(AzureModel):
    secret_store_resource: SecretStoreResource


class DataSourceInfo(AzureModel):
    resource_id: str = Field(alias="resourceID")
    resource_name: str | None = None
    datasource_type: str | None = None


class PolicyInfo(AzureModel):
    policy_id: str


class InstanceProperties(AzureModel):
    """A backup instance: which database, under which policy, with which credentials."""

    data_source_info: DataSourceInfo
    policy_info: PolicyInfo
    datasource_auth_credentials: AuthCredentials
    friendly_name: str | None = None

    def to_spec(self) -> InstanceSpec:
        return InstanceSpec(
            database_id=self.data_source_info.resource_id,
            policy_id=self.policy_info.policy_id,
            secret_uri=self.datasource_auth_credentials.secret_store_resource.uri,
            friendly_name=self.friendly_name,
        )


class InstanceBody(AzureModel):
    """PUT of a backup instance (BackupInstanceResource)."""

    properties: InstanceProperties

    def to_spec(self) -> InstanceSpec:
        return self.properties.to_spec()


def _instance_properties(value: object) -> object:
    """Azure's SDK sends the instance's properties; a resource with `properties` works too."""
    return lookup(value, "properties") or value


class ValidateForBackupBody(AzureModel):
    """validateForBackup (ValidateForBackupRequest)."""

    backup_instance: Annotated[InstanceProperties, BeforeValidator(_instance_properties)]

    def to_spec(self) -> InstanceSpec:
        return self.backup_instance.to_spec()


class ModifyCredentials(AzureModel):
    secret_store_resource: SecretStoreResource | None = None


class ModifyInstanceProperties(AzureModel):
    """An instance as validateForModifyBackup gets it: az sends its credentials empty (`{}`),
    and then the instance's own secret is checked."""

    data_source_info: DataSourceInfo
    policy_info: PolicyInfo
    datasource_auth_credentials: ModifyCredentials | None = None
    friendly_name: str | None = None

    def to_spec(self) -> InstanceSpec:
        creds = self.datasource_auth_credentials
        store = creds.secret_store_resource if creds else None
        return InstanceSpec(
            database_id=self.data_source_info.resource_id,
            policy_id=self.policy_info.policy_id,
            secret_uri=store.uri if store else "",
            friendly_name=self.friendly_name,
        )


class ValidateForModifyBody(AzureModel):
    """validateForModifyBackup (ValidateForModifyBackupRequest); no secret: the stored one."""

    backup_instance: Annotated[ModifyInstanceProperties, BeforeValidator(_instance_properties)]

    def to_spec(self) -> InstanceSpec:
        return self.backup_instance.to_spec()


# -- adhoc backup and rehydration -----------------------------------------------------------


class TriggerOption(AzureModel):
    retention_tag_override: str | None = None


class BackupRuleOptions(AzureModel):
    rule_name: str | None = None
    trigger_option: TriggerOption | None = None


class AdhocBackupBody(AzureModel):
    """An on-demand backup (TriggerBackupRequest): the rule, and the retention tag to keep it by."""

    backup_rule_options: BackupRuleOptions | None = None

    @property
    def rule_name(self) -> str | None:
        return self.backup_rule_options.rule_name if self.backup_rule_options else None

    @property
    def retention_tag(self) -> str | None:
        options = self.backup_rule_options
        if options is None or options.trigger_option is None:
            return None
        return options.trigger_option.retention_tag_override


class RehydrateBody(AzureModel):
    """Rehydrate an archived point (AzureBackupRehydrationRequest)."""

    recovery_point_id: str
    rehydration_priority: str | None = None
    rehydration_retention_duration: str | None = None


# -- restore --------------------------------------------------------------------------------


def _fail_if_exists(value: object) -> str:
    """Restores never overwrite: FailIfExists (any case) is the one recovery option."""
    if value and not (isinstance(value, str) and value.lower() == "failifexists"):
        raise user_error(
            Code.UserErrorInvalidRecoveryOption,
            "recoveryOption must be FailIfExists: restores never overwrite a database.",
        )
    return "FailIfExists"


class DatasourceRef(AzureModel):
    """A database (datasourceInfo) or its server (datasourceSetInfo) by ARM id."""

    resource_id: str | None = Field(default=None, alias="resourceID")
    resource_name: str | None = None


class TargetDetails(AzureModel):
    """Where a restore as files writes: a container URL and a prefix inside it."""

    url: str | None = None
    # check_file_prefix bounds it (512) with its own code; the schema says so too
    file_prefix: str | None = Field(default=None, json_schema_extra={"maxLength": 512})
    target_resource_arm_id: str | None = None
    restore_target_location_type: str | None = None

    @field_validator("file_prefix")
    @classmethod
    def _safe_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return restore.check_file_prefix(value)
        except BadRequest as exc:
            raise user_error(exc.code, exc.message) from None


class RestoreTargetInfo(AzureModel):
    """RestoreTargetInfo (a new database) or RestoreFilesTargetInfo (dump files).

    Files when `objectType` says so or `targetDetails` is given; what each target needs is
    checked by `to_target`, naming the field relative to this object as Azure does.
    """

    object_type: str | None = None
    recovery_option: Annotated[str, BeforeValidator(_fail_if_exists)] = "FailIfExists"
    restore_location: str | None = None
    datasource_info: DatasourceRef | None = None
    datasource_set_info: DatasourceRef | None = None
    datasource_auth_credentials: AuthCredentials | None = None
    target_details: TargetDetails | None = None

    @property
    def is_files(self) -> bool:
        kind = (self.object_type or "").lower()
        return kind == "restorefilestargetinfo" or self.target_details is not None

    def to_target(self) -> DatabaseTarget | FilesTarget:
        return self._files() if self.is_files else self._database()

    def _files(self) -> FilesTarget:
        details = _needed(self.target_details, "targetDetails")
        return FilesTarget(
            url=_needed(details.url, "url"),
            file_prefix=_needed(details.file_prefix, "filePrefix"),
            arm_id=details.target_resource_arm_id,
            location=self.restore_location,
        )

    def _database(self) -> DatabaseTarget:
        info = self.datasource_info
        db_id = _needed(info.resource_id if info else None, "datasourceInfo.resourceID")
        database = arm.parse(db_id).name_of("databases") or (info.resource_name if info else None)
        if not database:
            raise BadRequest(
                "restoreTargetInfo.datasourceInfo.resourceID must name the new database "
                "('.../servers/SERVER/databases/NEWDB').",
                code=INVALID,
            )
        server = self.datasource_set_info
        creds = self.datasource_auth_credentials
        return DatabaseTarget(
            server_id=(server.resource_id if server else None) or server_of(db_id),
            database=database,
            secret_uri=_needed(
                creds.secret_store_resource.uri if creds else None,
                "datasourceAuthCredentials.secretStoreResource.uri",
            ),
            location=self.restore_location,
        )


def _needed(value: T | None, field: str) -> T:
    if value is None:
        raise BadRequest(f"The request body needs {field}.", code=INVALID, target=field)
    return value


def server_of(database_id: str) -> str:
    """The server id a database id sits under (`.../servers/S/databases/D` -> `.../servers/S`)."""
    segs = database_id.rstrip("/").split("/")
    lowered = [s.lower() for s in segs]
    if "databases" in lowered:
        return "/".join(segs[: len(lowered) - 1 - lowered[::-1].index("databases")])
    return database_id


_QUALIFIED = r"^[^.\s]+\.[^\s]+$"


class PgvaultRestoreOptions(AzureModel):
    """`pgvaultOptions`, pgvault's extension of a restore request (Azure has no such field):
    `verifyFirst` reads every object of the point before the target is touched (default:
    each object is verified while it streams); `tables` (`schema.table`) and `schemas`
    restore only those, with the objects they need (a restore as a database only)."""

    verify_first: bool = False
    tables: list[Annotated[str, Field(max_length=200, pattern=_QUALIFIED)]] = Field(
        default_factory=list, max_length=1000
    )
    schemas: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=1000
    )


class RestoreRequestBody(AzureModel):
    """A restore (AzureBackupRecoveryPointBasedRestoreRequest, or the one with rehydration)."""

    object_type: str | None = None
    recovery_point_id: str
    source_data_store_type: str | None = None
    restore_target_info: RestoreTargetInfo
    rehydration_priority: str | None = None
    rehydration_retention_duration: str | None = None
    pgvault_options: PgvaultRestoreOptions | None = None

    def to_request(self) -> RestoreRequest:
        opts = self.pgvault_options or PgvaultRestoreOptions()
        return RestoreRequest(
            self.recovery_point_id,
            self.source_data_store_type or "VaultStore",
            self.restore_target_info.to_target(),
            self.rehydration_priority,
            self.rehydration_retention_duration,
            verify_first=opts.verify_first,
            tables=tuple(opts.tables),
            schemas=tuple(opts.schemas),
        )


class ValidateRestoreBody(AzureModel):
    """validateRestore (ValidateRestoreRequestObject); a bare restore request works too."""

    restore_request_object: RestoreRequestBody

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: object) -> object:
        if isinstance(data, Mapping) and not lookup(data, "restoreRequestObject"):
            return {"restoreRequestObject": data}
        return data

    def to_request(self) -> RestoreRequest:
        return self.restore_request_object.to_request()


def restore_request(data: object) -> RestoreRequest:
    """Azure's restore request body (parsed JSON) as the request the service takes."""
    return parse(RestoreRequestBody, data).to_request()


# -- cross-region restore (locations/{region}/...) ------------------------------------------


class CrossRegionRestoreDetails(AzureModel):
    """Which backup instance, in which (primary) region, a secondary-region call is about."""

    source_region: str
    source_backup_instance_id: str


class CrossRegionRestoreBody(AzureModel):
    """crossRegionRestore and validateCrossRegionRestore (CrossRegionRestoreRequestObject)."""

    restore_request_object: RestoreRequestBody
    cross_region_restore_details: CrossRegionRestoreDetails

    def to_request(self, secondary_region: str) -> RestoreRequest:
        req = self.restore_request_object.to_request()
        return replace(req, secondary_region=secondary_region)


class SecondaryPointsBody(AzureModel):
    """fetchSecondaryRecoveryPoints (FetchSecondaryRPsRequestParameters)."""

    source_region: str
    source_backup_instance_id: str


class CrossRegionJobBody(AzureModel):
    """fetchCrossRegionRestoreJob (CrossRegionRestoreJobRequest)."""

    source_region: str
    source_backup_vault_id: str
    job_id: str


class CrossRegionJobsBody(AzureModel):
    """fetchCrossRegionRestoreJobs (CrossRegionRestoreJobsRequest)."""

    source_region: str
    source_backup_vault_id: str
