"""Restore requests: file prefixes, the job parameters and Azure's request bodies."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pgvault.api.dataprotection import filter_dates
from pgvault.errors import BadRequest
from pgvault.jobkinds.restore import DatabaseTarget, FilesTarget, RestoreRequest, check_file_prefix
from pgvault.schemas.dataprotection import restore_request

SERVER = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/servers/pg-target"
SECRET = "http://127.0.0.1:8080/keyvaults/kv1/secrets/pg-target"


# -- check_file_prefix ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    ["a", "a/b/c", "db_2026-11-25.x", "restores/sales/2026-11-25T12.00", "A-Z_0.9", "x" * 512],
)
def test_file_prefix_accepted(prefix: str) -> None:
    assert check_file_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "..",
        ".",
        "../x",
        "a/../b",
        "a/./b",
        "a/..",
        "/abs",
        "/",
        "a//b",
        "a/",
        "a\\b",
        "..\\x",
        "a b",
        "a:b",
        "a?b",
        "a*b",
        "x" * 513,
        "a/b\n",
        "\u00e9t\u00e9",
        None,
        7,
    ],
)
def test_file_prefix_rejected(prefix: object) -> None:
    with pytest.raises(BadRequest) as info:
        check_file_prefix(prefix)  # type: ignore[arg-type]
    assert info.value.code == "UserErrorInvalidFilePrefix"
    assert info.value.target == "targetDetails.filePrefix"


# -- RestoreRequest params ------------------------------------------------------------------


@pytest.mark.parametrize(
    "req",
    [
        RestoreRequest("rp1", "VaultStore", DatabaseTarget(SERVER, "newdb", SECRET, "eastus")),
        RestoreRequest("rp2", "ArchiveStore", DatabaseTarget(SERVER, "newdb", SECRET)),
        RestoreRequest(
            "rp3", "VaultStore", FilesTarget("http://h/blob/sa/c", "x/y", "/subscriptions/s", "e")
        ),
        RestoreRequest("rp4", "VaultStore", FilesTarget("http://h/blob/sa/c", "p")),
    ],
)
def test_params_round_trip(req: RestoreRequest) -> None:
    params = req.to_params()
    assert params["recoveryPointId"] == req.recovery_point_id
    assert params["restoreType"] == req.restore_type
    # Job params are stored as JSON: they must survive a JSON round trip too.
    assert RestoreRequest.from_params(json.loads(json.dumps(params))) == req


def test_restore_type() -> None:
    db = RestoreRequest("r", "VaultStore", DatabaseTarget(SERVER, "d", SECRET))
    files = RestoreRequest("r", "VaultStore", FilesTarget("u", "p"))
    assert db.restore_type == "RestoreAsDatabase"
    assert files.restore_type == "RestoreAsFiles"


# -- restore_request (Azure bodies) ---------------------------------------------------------


DB_BODY: dict[str, Any] = {
    "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
    "recoveryPointId": "rp-123",
    "sourceDataStoreType": "VaultStore",
    "restoreTargetInfo": {
        "objectType": "RestoreTargetInfo",
        "recoveryOption": "FailIfExists",
        "restoreLocation": "eastus",
        "datasourceInfo": {
            "objectType": "Datasource",
            "resourceID": SERVER + "/databases/restored",
            "resourceName": "restored",
            "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
        },
        "datasourceSetInfo": {"objectType": "DatasourceSet", "resourceID": SERVER},
        "datasourceAuthCredentials": {
            "objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": SECRET},
        },
    },
}

FILES_BODY: dict[str, Any] = {
    "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
    "recoveryPointId": "rp-123",
    "sourceDataStoreType": "VaultStore",
    "restoreTargetInfo": {
        "objectType": "RestoreFilesTargetInfo",
        "recoveryOption": "FailIfExists",
        "restoreLocation": "eastus",
        "targetDetails": {
            "url": "http://127.0.0.1:8080/blob/sa1/restores",
            "filePrefix": "sales/db_2026-11-25",
            "restoreTargetLocationType": "AzureBlobs",
            "targetResourceArmId": "/subscriptions/s1/resourceGroups/rg/providers/"
            "Microsoft.Storage/storageAccounts/sa1/blobServices/default/containers/restores",
        },
    },
}

DB_EXPECTED = RestoreRequest(
    "rp-123", "VaultStore", DatabaseTarget(SERVER, "restored", SECRET, "eastus")
)
FILES_EXPECTED = RestoreRequest(
    "rp-123",
    "VaultStore",
    FilesTarget(
        "http://127.0.0.1:8080/blob/sa1/restores",
        "sales/db_2026-11-25",
        FILES_BODY["restoreTargetInfo"]["targetDetails"]["targetResourceArmId"],
        "eastus",
    ),
)


def _recase(obj: Any, how: Any) -> Any:
    """The same body with every key re-cased by `how`."""
    if isinstance(obj, dict):
        return {how(k): _recase(v, how) for k, v in obj.items()}
    return obj


def _recase_enums(obj: Any, how: Any) -> Any:
    obj = copy.deepcopy(obj)
    info = obj["restoreTargetInfo"]
    info["objectType"] = how(info["objectType"])
    info["recoveryOption"] = how(info["recoveryOption"])
    return obj


CASINGS = [
    pytest.param(lambda k: k, id="as-azure"),
    pytest.param(str.lower, id="lower"),
    pytest.param(str.upper, id="upper"),
    pytest.param(lambda k: k[:1].upper() + k[1:], id="Pascal"),
]


@pytest.mark.parametrize("how", CASINGS)
def test_database_body_any_key_case(how: Any) -> None:
    assert restore_request(_recase(DB_BODY, how)) == DB_EXPECTED


@pytest.mark.parametrize("how", CASINGS)
def test_files_body_any_key_case(how: Any) -> None:
    assert restore_request(_recase(FILES_BODY, how)) == FILES_EXPECTED


@pytest.mark.parametrize("how", [str.lower, str.upper])
def test_enum_values_any_case(how: Any) -> None:
    assert restore_request(_recase_enums(DB_BODY, how)) == DB_EXPECTED
    assert restore_request(_recase_enums(FILES_BODY, how)) == FILES_EXPECTED


def test_files_target_from_object_type_or_target_details() -> None:
    body = copy.deepcopy(FILES_BODY)
    del body["restoreTargetInfo"]["objectType"]
    assert restore_request(body) == FILES_EXPECTED
    body = copy.deepcopy(FILES_BODY)
    del body["restoreTargetInfo"]["targetDetails"]
    with pytest.raises(BadRequest) as info:
        restore_request(body)
    assert info.value.code == "InvalidRequestContent"
    assert info.value.target == "targetDetails"


def test_database_server_from_database_id_when_no_set_info() -> None:
    body = copy.deepcopy(DB_BODY)
    del body["restoreTargetInfo"]["datasourceSetInfo"]
    assert restore_request(body) == DB_EXPECTED


def test_database_server_from_database_id_any_case() -> None:
    """ARM ids are case-insensitive: '/DATABASES/' must split off the server id too."""
    body = copy.deepcopy(DB_BODY)
    del body["restoreTargetInfo"]["datasourceSetInfo"]
    body["restoreTargetInfo"]["datasourceInfo"]["resourceID"] = SERVER + "/DATABASES/restored"
    req = restore_request(body)
    assert isinstance(req.target, DatabaseTarget)
    assert req.target.database == "restored"
    assert req.target.server_id == SERVER


def test_database_name_from_resource_name() -> None:
    body = copy.deepcopy(DB_BODY)
    body["restoreTargetInfo"]["datasourceInfo"]["resourceID"] = SERVER
    assert restore_request(body) == DB_EXPECTED


def test_defaults() -> None:
    body = copy.deepcopy(DB_BODY)
    del body["sourceDataStoreType"]
    del body["restoreTargetInfo"]["recoveryOption"]
    assert restore_request(body) == DB_EXPECTED


@pytest.mark.parametrize("option", ["OverwriteIfExists", "Overwrite", "failifexist", 1])
def test_recovery_option_other_than_fail_if_exists(option: object) -> None:
    body = copy.deepcopy(DB_BODY)
    body["restoreTargetInfo"]["recoveryOption"] = option
    with pytest.raises(BadRequest) as info:
        restore_request(body)
    assert info.value.status == 400
    assert info.value.code == "UserErrorInvalidRecoveryOption"


def test_bad_file_prefix_in_body() -> None:
    body = copy.deepcopy(FILES_BODY)
    body["restoreTargetInfo"]["targetDetails"]["filePrefix"] = "../escape"
    with pytest.raises(BadRequest) as info:
        restore_request(body)
    assert info.value.code == "UserErrorInvalidFilePrefix"


def _without(path: list[str]) -> dict[str, Any]:
    body = copy.deepcopy(DB_BODY)
    cur = body
    for key in path[:-1]:
        cur = cur[key]
    del cur[path[-1]]
    return body


@pytest.mark.parametrize(
    ("body", "target"),
    [
        (_without(["recoveryPointId"]), "recoveryPointId"),
        (_without(["restoreTargetInfo"]), "restoreTargetInfo"),
        (_without(["restoreTargetInfo", "datasourceInfo"]), "datasourceInfo.resourceID"),
        (
            _without(["restoreTargetInfo", "datasourceAuthCredentials"]),
            "datasourceAuthCredentials.secretStoreResource.uri",
        ),
    ],
)
def test_missing_fields_name_the_field(body: dict[str, Any], target: str) -> None:
    with pytest.raises(BadRequest) as info:
        restore_request(body)
    assert info.value.code == "InvalidRequestContent"
    assert info.value.target == target


def test_database_id_without_database_name() -> None:
    body = copy.deepcopy(DB_BODY)
    info = body["restoreTargetInfo"]
    info["datasourceInfo"] = {"resourceID": SERVER}
    with pytest.raises(BadRequest) as exc:
        restore_request(body)
    assert exc.value.code == "InvalidRequestContent"


@pytest.mark.parametrize("body", [None, [], "x", 3])
def test_non_object_bodies(body: object) -> None:
    with pytest.raises(BadRequest):
        restore_request(body)


# -- $filter on recovery points -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "startDate eq '2021-01-01T00:00:00' and endDate eq '2021-02-01T00:00:00'",
            (datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 2, 1, tzinfo=UTC)),
        ),
        (
            "STARTDATE EQ '2021-01-01T00:00:00Z'",
            (datetime(2021, 1, 1, tzinfo=UTC), None),
        ),
        (
            "endDate eq '2021-02-01T01:00:00+01:00'",
            (None, datetime(2021, 2, 1, tzinfo=UTC)),
        ),
        ("", (None, None)),
        (None, (None, None)),
        ("somethingElse eq 'x'", (None, None)),
    ],
)
def testfilter_dates(text: str | None, expected: tuple[datetime | None, datetime | None]) -> None:
    start, end = filter_dates(text)
    assert (start, end) == expected
    for value in (start, end):
        assert value is None or value.tzinfo is not None


def test_filter_dates_invalid() -> None:
    with pytest.raises(BadRequest) as info:
        filter_dates("startDate eq 'yesterday'")
    assert info.value.code == "InvalidFilter"


# -- pgvaultOptions (pgvault's extension) ----------------------------------------------------


def test_pgvault_options_reach_the_request_and_the_job() -> None:
    body = {
        **copy.deepcopy(DB_BODY),
        "pgvaultOptions": {"verifyFirst": True, "tables": ["app.orders"], "schemas": ["audit"]},
    }
    req = restore_request(body)
    assert (req.verify_first, req.tables, req.schemas) == (True, ("app.orders",), ("audit",))
    assert RestoreRequest.from_params(json.loads(json.dumps(req.to_params()))) == req
    plain = restore_request(copy.deepcopy(DB_BODY))
    assert (plain.verify_first, plain.tables, plain.schemas) == (False, (), ())
    old_params = {
        k: v for k, v in plain.to_params().items() if k not in ("verifyFirst", "tables", "schemas")
    }
    assert RestoreRequest.from_params(old_params) == plain  # jobs queued before the extension


@pytest.mark.parametrize("tables", [["orders"], ["a b.c"], [""]])
def test_pgvault_options_table_needs_a_schema(tables: list[str]) -> None:
    body = {**copy.deepcopy(DB_BODY), "pgvaultOptions": {"tables": tables}}
    with pytest.raises(BadRequest):
        restore_request(body)
