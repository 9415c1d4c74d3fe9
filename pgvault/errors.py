"""Errors with stable codes, shaped like Azure's CloudError.

Every code pgvault raises or stores is a member of `Code`, catalogued with the HTTP
status it is served with and a default recommended action (the sentence shown when a
raise site gives none). A code's value is its wire string: job rows, operation errors
and API bodies hold exactly that string; `Code.stored(s)` converts one back.

Tree::

    PgVaultError (500)                  code, message, recommended action, HTTP status
    ├── BackupToolError (500)           pg_dump failed (UserErrorBackupToolFailed)
    ├── CorruptRecoveryPoint (500)      a stored object failed verification
    ├── StorageError (500)              the object store refused or failed an operation
    ├── JobCancelled (500)              a running job stops at a user's cancel
    ├── ConfigError (500)               a bad setting at start (also a ValueError)
    ├── TooManyAttempts (429)           sign-in locked after repeated failures, or rate-limited
    ├── PayloadTooLarge (413)           a request body over the configured limit
    ├── BadRequest (400)                invalid input at the edge; nothing changed
    │   └── UserError (400)             Azure's UserError* codes raised by validation
    │       └── ValidationFailed (400)  several checks failed; the first gives the code
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    └── Conflict (409)

The class decides the status a response carries (as before the catalogue existed);
the catalogue records, per code, the status of the class each raise site uses, and a
unit test keeps the two in step. The one code raised with two classes is
`PrincipalNotFound`: 404 when a lookup finds nothing, 400 (BadRequest) when a request
names a vault ambiguously — the catalogue lists 404.

A job stores `code` and `message` of the error that ended it. Messages never
contain secrets: connection strings are parsed before any error can quote them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    """Every error code, with its HTTP status and default recommended action (one table)."""

    status: int
    action: str

    def __new__(cls, value: str, status: int, action: str) -> Code:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.action = action
        return member

    @classmethod
    def stored(cls, value: str) -> Code:
        """The member a stored code string names (a job row, an operation's error).

        A member's name is its value (a unit test checks it), so this is a name lookup;
        an unknown string raises KeyError rather than passing as some other code.
        """
        return cls[value]

    # -- 400: the request or the user's setup is wrong ----------------------------------------
    BadRequest = "BadRequest", 400, "Correct the request and send it again."
    BadParameter = "BadParameter", 400, "Correct the parameter the message names and try again."
    InvalidRequestContent = (
        "InvalidRequestContent",
        400,
        "Correct the request body and send it again.",
    )
    InvalidResourceId = (
        "InvalidResourceId",
        400,
        "Pass a full resource id: /subscriptions/{id}/resourceGroups/{name}/providers/...",
    )
    InvalidResourceName = (
        "InvalidResourceName",
        400,
        "Choose a name that follows the rules the message gives.",
    )
    InvalidFilter = "InvalidFilter", 400, "Correct the $filter expression."
    ForbiddenByRbac = (
        "ForbiddenByRbac",
        403,
        "Assign the caller a Key Vault data role (e.g. Key Vault Secrets User) on the key vault.",
    )
    InvalidQuery = (
        "InvalidQuery",
        400,
        "Send one of the Resource Graph queries `az dataprotection … list-from-resourcegraph` "
        "builds.",
    )
    InvalidHeaderValue = (
        "InvalidHeaderValue",
        400,
        "Send header values without control characters (no CR, LF or NUL).",
    )
    InvalidQueryParameterValue = (
        "InvalidQueryParameterValue",
        400,
        "Send query parameter values without control characters (no CR, LF or NUL).",
    )
    InvalidTag = (
        "InvalidTag",
        400,
        "Use at most 50 tags, names of at most 512 characters and values of at most 256.",
    )
    InvalidDatastoreUrl = (
        "InvalidDatastoreUrl",
        400,
        "Use a file://, s3://, az:// or memory:// datastore URL.",
    )
    InvalidRoleAssignmentId = (
        "InvalidRoleAssignmentId",
        400,
        "Name the role assignment with a GUID.",
    )
    InvalidRoleDefinitionId = (
        "InvalidRoleDefinitionId",
        400,
        "Name the role definition with a GUID.",
    )
    LocationCannotBeChanged = (
        "LocationCannotBeChanged",
        400,
        "Create a new resource in the other region instead.",
    )
    LocationNotAvailableForResourceType = (
        "LocationNotAvailableForResourceType",
        400,
        "Use one of the regions the message lists.",
    )
    VaultAlreadyExists = (
        "VaultAlreadyExists",
        400,
        "Choose another key vault name; key vault names are global.",
    )
    UserErrorGeneric = "UserErrorGeneric", 400, "Correct the setup the message names and retry."
    UserErrorBackupToolVersionTooOld = (
        "UserErrorBackupToolVersionTooOld",
        400,
        "Install the PostgreSQL client tools of the server's major version or newer.",
    )
    UserErrorContainerNotAccessible = (
        "UserErrorContainerNotAccessible",
        400,
        "Check the storage account's endpoint and credentials, and that the container exists.",
    )
    UserErrorCrossSubscriptionRestoreDisabled = (
        "UserErrorCrossSubscriptionRestoreDisabled",
        400,
        "Restore within the vault's subscription, or enable cross-subscription restore.",
    )
    UserErrorDBNotFound = (
        "UserErrorDBNotFound",
        400,
        "Check the database name, or register the right server.",
    )
    UserErrorDBUserAuthFailed = (
        "UserErrorDBUserAuthFailed",
        400,
        "Update the key-vault secret with valid credentials.",
    )
    UserErrorDatabaseNameAlreadyInUse = (
        "UserErrorDatabaseNameAlreadyInUse",
        400,
        "Choose a new target database name (restores never overwrite).",
    )
    UserErrorDatasourceRegionMismatch = (
        "UserErrorDatasourceRegionMismatch",
        400,
        "Protect the database from a vault in the server's region.",
    )
    UserErrorDppDatasourceAlreadyProtected = (
        "UserErrorDppDatasourceAlreadyProtected",
        400,
        "A database can be protected by one vault only: stop protection there first.",
    )
    UserErrorFileAlreadyExists = (
        "UserErrorFileAlreadyExists",
        400,
        "Choose another file prefix (restores never overwrite).",
    )
    UserErrorInvalidFilePrefix = (
        "UserErrorInvalidFilePrefix",
        400,
        "Use a relative path of letters, digits, '.', '_', '-' and '/'.",
    )
    UserErrorInvalidRecoveryOption = (
        "UserErrorInvalidRecoveryOption",
        400,
        "Set recoveryOption to FailIfExists.",
    )
    UserErrorInvalidRehydrationDuration = (
        "UserErrorInvalidRehydrationDuration",
        400,
        "Use a rehydration duration from P10D to P30D.",
    )
    UserErrorInvalidRehydrationPriority = (
        "UserErrorInvalidRehydrationPriority",
        400,
        "Use the rehydration priority Standard or High.",
    )
    UserErrorInvalidSecret = (
        "UserErrorInvalidSecret",
        400,
        "Pass the secretUri of an existing key-vault secret.",
    )
    UserErrorInvalidSecretStore = (
        "UserErrorInvalidSecretStore",
        400,
        "Create the key vault, or fix the secret URI.",
    )
    UserErrorInvalidSourceDataStore = (
        "UserErrorInvalidSourceDataStore",
        400,
        "Restore from the data store that holds the recovery point.",
    )
    UserErrorIrreversibleSettingChange = (
        "UserErrorIrreversibleSettingChange",
        400,
        "Keep the setting as it is; create a new vault if you need another value.",
    )
    UserErrorMSIMissingPermissions = (
        "UserErrorMSIMissingPermissions",
        400,
        "Assign the vault's managed identity the role the message names.",
    )
    UserErrorMissingPermissionsOnSecretStore = (
        "UserErrorMissingPermissionsOnSecretStore",
        400,
        "Assign the vault's managed identity Key Vault Secrets User on the key vault.",
    )
    UserErrorMissingDBPermissions = (
        "UserErrorMissingDBPermissions",
        400,
        "Grant the database user the privileges the message names.",
    )
    UserErrorRecoveryPointInArchive = (
        "UserErrorRecoveryPointInArchive",
        400,
        "Restore with sourceDataStoreType ArchiveStore and a rehydration priority.",
    )
    UserErrorRestoreOverOriginalNotSupported = (
        "UserErrorRestoreOverOriginalNotSupported",
        400,
        "Choose another target database name.",
    )
    UserErrorRestoreToLowerVersion = (
        "UserErrorRestoreToLowerVersion",
        400,
        "Restore to a server of the same or a newer major version.",
    )
    UserErrorSecretValueInUnsupportedFormat = (
        "UserErrorSecretValueInUnsupportedFormat",
        400,
        "Update the key-vault secret with a valid connection string.",
    )
    UserErrorSecretServerMismatch = (
        "UserErrorSecretServerMismatch",
        400,
        "Register the server with the host and port its key-vault secret names (Server=, "
        "Port=), or use a secret made for this server's address.",
    )
    UserErrorSecretServerNotNamed = (
        "UserErrorSecretServerNotNamed",
        400,
        "Add the server's address to the key-vault secret ('Server=HOST;Port=5432;...'): "
        "pgvault sends a password only to the server its secret names.",
    )
    UserErrorInsecurePasswordAuthentication = (
        "UserErrorInsecurePasswordAuthentication",
        400,
        "Configure the server for scram-sha-256 (password_encryption and pg_hba.conf), or, "
        "if it must stay on md5, set the registered server's "
        "properties.passwordAuthentication to md5.",
    )
    UserErrorServerCertificateNotTrusted = (
        "UserErrorServerCertificateNotTrusted",
        400,
        "Give the registered server the root certificate that signed the server's "
        "certificate (properties.sslRootCertificate), and register it by the host name "
        "the certificate names.",
    )
    UserErrorServerUnreachable = (
        "UserErrorServerUnreachable",
        400,
        "Check that the server is running and reachable from pgvault (host, port, firewall).",
    )
    UserErrorTargetRegionMismatch = (
        "UserErrorTargetRegionMismatch",
        400,
        "Pick a restore target in the vault's region.",
    )

    # OAuth 2.0's own error codes (RFC 6749 5.2), returned by POST /oauth2/token
    invalid_request = (
        "invalid_request",
        400,
        "Send grant_type=client_credentials with client_id and client_secret, "
        "or grant_type=password with username and password.",
    )
    unsupported_grant_type = (
        "unsupported_grant_type",
        400,
        "Use grant_type client_credentials or password.",
    )

    # -- 400: cross-region restore (issue 10) ------------------------------------------------
    UserErrorCrossRegionRestoreNeedsGeoRedundancy = (
        "UserErrorCrossRegionRestoreNeedsGeoRedundancy",
        400,
        "Set the vault's storageSettings type to GeoRedundant in the same request, or keep "
        "Cross Region Restore disabled.",
    )
    UserErrorCrossRegionRestoreCannotBeDisabled = (
        "UserErrorCrossRegionRestoreCannotBeDisabled",
        400,
        "Keep Cross Region Restore enabled; it cannot be turned off once enabled.",
    )
    UserErrorCrossRegionRestoreNotEnabled = (
        "UserErrorCrossRegionRestoreNotEnabled",
        400,
        "Enable featureSettings.crossRegionRestoreSettings on the (geo-redundant) vault, then "
        "wait for its recovery points to replicate.",
    )
    UserErrorCrossRegionRestoreRegionNotPaired = (
        "UserErrorCrossRegionRestoreRegionNotPaired",
        400,
        "Use the vault's paired secondary region (`pgvault region list` shows the pairs).",
    )
    UserErrorCrossRegionRestoreToPrimaryNotSupported = (
        "UserErrorCrossRegionRestoreToPrimaryNotSupported",
        400,
        "Cross-region restore goes only from the primary to the secondary region; restore "
        "to the primary region with an ordinary restore.",
    )
    UserErrorRecoveryPointNotReplicated = (
        "UserErrorRecoveryPointNotReplicated",
        400,
        "Pick a point listed by fetchSecondaryRecoveryPoints "
        "(`pgvault recovery-point list --secondary-region`), or wait for replication.",
    )
    UserErrorCrossRegionRestoreArchivedPoint = (
        "UserErrorCrossRegionRestoreArchivedPoint",
        400,
        "Rehydrate the archived point in the primary region first, or pick a point in the "
        "vault tier.",
    )
    # -- 401 / 403 / 429: who is calling ------------------------------------------------------
    AuthenticationFailed = (
        "AuthenticationFailed",
        401,
        "Get a token with `pgvault auth token` and send it as 'Authorization: Bearer TOKEN'.",
    )
    InvalidAuthenticationToken = (
        "InvalidAuthenticationToken",
        401,
        "Get a new token with `pgvault auth token`.",
    )
    InvalidClientCredentials = (
        "InvalidClientCredentials",
        401,
        "Check the client id and secret.",
    )
    InvalidUserCredentials = "InvalidUserCredentials", 401, "Check the user name and password."
    AuthorizationFailed = (
        "AuthorizationFailed",
        403,
        "Ask an Owner to assign you a role that includes this action.",
    )
    CsrfTokenInvalid = (
        "CsrfTokenInvalid",
        403,
        "Reload the page (sign in again if asked) and submit the form from the portal.",
    )
    TooManyFailedLogins = (
        "TooManyFailedLogins",
        429,
        "Wait a few minutes, then sign in with the right credentials.",
    )

    TooManyRequests = (
        "TooManyRequests",
        429,
        "Wait for the number of seconds in the Retry-After header, then try again.",
    )

    # -- 413: the request is too large --------------------------------------------------------
    RequestBodyTooLarge = (
        "RequestBodyTooLarge",
        413,
        "Send a smaller request body (the limit is PGVAULT_MAX_BODY_BYTES, 1 MiB by default).",
    )

    # -- 404: nothing by that name ------------------------------------------------------------
    ResourceNotFound = (
        "ResourceNotFound",
        404,
        "Check the resource's name and resource group.",
    )
    NoRegisteredProviderFound = (
        "NoRegisteredProviderFound",
        404,
        "Check the request path and the api-version.",
    )
    ContainerNotFound = (
        "ContainerNotFound",
        404,
        "Create the container first, or check its name.",
    )
    PrincipalNotFound = (
        "PrincipalNotFound",
        404,
        "List principals with `pgvault principal list` and name an existing one.",
    )
    ResourceGroupNotFound = (
        "ResourceGroupNotFound",
        404,
        "Create the resource group first, or check its name.",
    )
    RoleAssignmentNotFound = (
        "RoleAssignmentNotFound",
        404,
        "List role assignments and name an existing one.",
    )
    RoleDefinitionDoesNotExist = (
        "RoleDefinitionDoesNotExist",
        404,
        "List roles with `pgvault role definition list`.",
    )
    SecretNotFound = (
        "SecretNotFound",
        404,
        "Check the secret's name, or create it with `pgvault keyvault secret set`.",
    )
    SubscriptionNotFound = (
        "SubscriptionNotFound",
        404,
        "List subscriptions with GET /subscriptions.",
    )
    UserErrorPolicyNotFound = (
        "UserErrorPolicyNotFound",
        404,
        "Create the backup policy first, or check its name.",
    )
    UserErrorRecoveryPointNotFound = (
        "UserErrorRecoveryPointNotFound",
        404,
        "List the instance's recovery points and pick an existing one.",
    )

    # -- 405 ----------------------------------------------------------------------------------
    MethodNotAllowed = (
        "MethodNotAllowed",
        405,
        "Check which methods the API path accepts.",
    )

    # -- 409: the resource's state forbids the change -----------------------------------------
    Conflict = "Conflict", 409, "Check the resource's current state and try again."
    ManagedIdentityCannotBeDeleted = (
        "ManagedIdentityCannotBeDeleted",
        409,
        "Delete the vault; its managed identity goes with it.",
    )
    PrincipalExists = (
        "PrincipalExists",
        409,
        "Choose another name, or use the existing principal.",
    )
    RoleAssignmentExists = (
        "RoleAssignmentExists",
        409,
        "Nothing to do: the role assignment is already in place.",
    )
    RoleAssignmentUpdateNotPermitted = (
        "RoleAssignmentUpdateNotPermitted",
        409,
        "Delete the existing role assignment first, or use a new assignment id.",
    )
    RoleDefinitionExists = (
        "RoleDefinitionExists",
        409,
        "Built-in roles cannot change: create a custom role instead.",
    )
    RoleDefinitionWithSameNameExists = (
        "RoleDefinitionWithSameNameExists",
        409,
        "Choose another role name, or update the existing custom role.",
    )
    StorageAccountAlreadyTaken = (
        "StorageAccountAlreadyTaken",
        409,
        "Choose another storage account name; names are global.",
    )
    StorageAccountKindImmutable = (
        "StorageAccountKindImmutable",
        409,
        "Create a new storage account of the kind you need.",
    )
    StoragePathNotAllowed = (
        "StoragePathNotAllowed",
        400,
        "Use a directory under the local storage roots the operator configured "
        "(PGVAULT_LOCAL_STORAGE_ROOTS).",
    )
    StorageEndpointNotAllowed = (
        "StorageEndpointNotAllowed",
        400,
        "Use an endpoint that the operator allows (PGVAULT_STORAGE_ENDPOINT_ALLOW) and that "
        "pgvault can reach.",
    )
    StorageAccountKeyRequired = (
        "StorageAccountKeyRequired",
        400,
        "Supply the account's key (secretAccessKey or accountKey) with this change.",
    )
    UserErrorDatasourceCannotChange = (
        "UserErrorDatasourceCannotChange",
        409,
        "Create a new backup instance for the other database.",
    )
    UserErrorInvalidProtectionState = (
        "UserErrorInvalidProtectionState",
        409,
        "Bring the backup instance into a state the operation accepts.",
    )
    UserErrorMaxConcurrentOperationLimitReached = (
        "UserErrorMaxConcurrentOperationLimitReached",
        409,
        "Wait for the running operation to finish, then try again.",
    )
    UserErrorOperationBlockedByImmutability = (
        "UserErrorOperationBlockedByImmutability",
        409,
        "Stop protection and retain data instead, or wait until the recovery points expire.",
    )
    UserErrorOperationInProgress = (
        "UserErrorOperationInProgress",
        409,
        "Wait for the running operation to finish, then try again.",
    )
    UserErrorPolicyInUse = (
        "UserErrorPolicyInUse",
        409,
        "Assign the backup instances another policy first.",
    )
    UserErrorServerInUse = (
        "UserErrorServerInUse",
        409,
        "Stop protection of the server's databases first.",
    )
    UserErrorVaultNotEmpty = (
        "UserErrorVaultNotEmpty",
        409,
        "Stop protection and delete the vault's backup instances first.",
    )

    JobCannotBeCancelled = (
        "JobCannotBeCancelled",
        409,
        "Wait for the job to finish: a restore cannot be cancelled once its data transfer "
        "has started.",
    )
    JobAlreadyFinished = (
        "JobAlreadyFinished",
        409,
        "Nothing to cancel: the job has already ended.",
    )
    # -- 500: pgvault, its host or a job failed -----------------------------------------------
    InternalError = (
        "InternalError",
        500,
        "See the service log; try again, and report the problem if it persists.",
    )
    WorkerLost = "WorkerLost", 500, "Run the operation again."
    JobCancelledByUser = "JobCancelledByUser", 500, "Run the operation again if you still need it."
    BackupToolError = (
        "BackupToolError",
        500,
        "Check the PostgreSQL client tools installed on the pgvault host.",
    )
    BackupToolNotFound = (
        "BackupToolNotFound",
        500,
        "Install the PostgreSQL client tools (pg_dump, pg_restore) on the pgvault host.",
    )
    InvalidMasterKey = (
        "InvalidMasterKey",
        500,
        "Configure a 32-byte master key, hex or base64 encoded.",
    )
    TlsSettingsInvalid = (
        "TlsSettingsInvalid",
        500,
        "Give both --tls-cert and --tls-key (or PGVAULT_TLS_CERT and PGVAULT_TLS_KEY): "
        "readable PEM files, the key matching the certificate.",
    )
    WorkerSettingsInvalid = (
        "WorkerSettingsInvalid",
        500,
        "Set PGVAULT_EXECUTOR=procrastinate and PGVAULT_DATABASE_URL=postgresql://... for "
        "`pgvault serve` and every `pgvault worker`.",
    )
    TlsKeyFileTooOpen = (
        "TlsKeyFileTooOpen",
        500,
        "Make the TLS key file readable by its owner only (chmod 600 FILE), then start again.",
    )
    ConfigInvalid = (
        "ConfigInvalid",
        500,
        "Correct the named key in the config file (PGVAULT_CONFIG or $PGVAULT_HOME/pgvault.toml) "
        "or the named PGVAULT_* variable; README, Configuration, lists every key.",
    )
    HomeNotPrivate = (
        "HomeNotPrivate",
        500,
        "Make PGVAULT_HOME owned by the user pgvault runs as, with mode 0700 (chmod 700).",
    )
    SecretDecryptionFailed = (
        "SecretDecryptionFailed",
        500,
        "Start pgvault with the master key the secrets were stored with.",
    )
    StorageError = (
        "StorageError",
        500,
        "Check that the storage is reachable and its credentials are valid, then try again.",
    )
    StorageObjectNotFound = (
        "StorageObjectNotFound",
        500,
        "Check that the container and the recovery point's objects still exist.",
    )
    UserErrorBackupToolFailed = (
        "UserErrorBackupToolFailed",
        500,
        "Fix the cause pg_dump reports in the message, then back up again.",
    )
    UserErrorRecoveryPointCorrupted = (
        "UserErrorRecoveryPointCorrupted",
        500,
        "Restore from another recovery point, and check the datastore's integrity.",
    )
    UserErrorRestoreFailed = (
        "UserErrorRestoreFailed",
        500,
        "Fix the cause pg_restore reports in the message, then restore again.",
    )
    UserErrorPartialRestoreNotSupported = (
        "UserErrorPartialRestoreNotSupported",
        400,
        "Restore the whole point; tables, schemas and contents come only from a format-2 "
        "point (taken by this release) restored as a database.",
    )


class PgVaultError(Exception):
    """Base error: a stable `code`, a message that says what to do, an HTTP status."""

    status = 500
    default_code = Code.InternalError

    def __init__(
        self,
        message: str,
        *,
        code: Code | None = None,
        recommended_action: str | None = None,
        target: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.code: Code = code or self.default_code
        self.message = message
        self.recommended_action = recommended_action or self.code.action
        self.target = target
        self.retryable = retryable

    def to_body(self) -> dict[str, Any]:
        """The `{"error": {...}}` body Azure returns, with the UserFacingError detail."""
        info: dict[str, Any] = {
            "code": self.code.value,
            "message": self.message,
            "recommendedAction": [self.recommended_action] if self.recommended_action else [],
            "target": self.target,
            "isRetryable": self.retryable,
            "isUserError": self.code.startswith("UserError"),
        }
        return {
            "error": {
                "code": self.code.value,
                "message": self.message,
                "target": self.target,
                "details": None,
                "additionalInfo": [{"type": "UserFacingError", "info": info}],
            }
        }


class BackupToolError(PgVaultError):
    """pg_dump failed; its stderr is in the message."""

    default_code = Code.UserErrorBackupToolFailed


class CorruptRecoveryPoint(PgVaultError):
    """A recovery point's object failed verification (size or checksum)."""

    default_code = Code.UserErrorRecoveryPointCorrupted


class JobCancelled(PgVaultError):
    """Raised inside a running job whose cancel was asked for: the kind cleans up as for any
    failure, and the job ends Cancelled rather than Failed."""

    default_code = Code.JobCancelledByUser

    def __init__(self) -> None:
        super().__init__(
            "The job was cancelled at a user's request; what it had written was removed."
        )


class StorageError(PgVaultError):
    """The object store refused or failed an operation."""

    default_code = Code.StorageError


class ConfigError(PgVaultError, ValueError):
    """A bad setting in the config file or a PGVAULT_* variable: start is refused, naming it.
    (A ValueError too, as bad settings were before the config file existed.)"""

    default_code = Code.ConfigInvalid


class TooManyAttempts(PgVaultError):
    """Sign-in is locked for a while after repeated failures."""

    status = 429
    default_code = Code.TooManyFailedLogins
    #: Seconds the caller should wait (the Retry-After header), when known.
    retry_after: int | None = None


class PayloadTooLarge(PgVaultError):
    """A request body larger than the service accepts (refused while it is read)."""

    status = 413
    default_code = Code.RequestBodyTooLarge


class BadRequest(PgVaultError):
    status = 400
    default_code = Code.BadRequest


class UserError(BadRequest):
    """A check on the user's setup failed (secret, permissions, target database)."""

    default_code = Code.UserErrorGeneric


class Unauthorized(PgVaultError):
    status = 401
    default_code = Code.AuthenticationFailed


class Forbidden(PgVaultError):
    status = 403
    default_code = Code.AuthorizationFailed


class NotFound(PgVaultError):
    status = 404
    default_code = Code.ResourceNotFound


class Conflict(PgVaultError):
    status = 409
    default_code = Code.Conflict


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
