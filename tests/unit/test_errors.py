"""The error-code catalogue: every code has a status and a recommendation, and raise sites use it."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgvault import errors
from pgvault.crypto import Cipher
from pgvault.errors import (
    BadRequest,
    Code,
    NotFound,
    PgVaultError,
    StorageError,
    UserError,
    ValidationFailed,
)
from pgvault.storage import accounts
from pgvault.storage.accounts import StorageAccount
from pgvault.storage.backends import StoragePolicy, from_url

PACKAGE = Path(errors.__file__).parent
STATUSES = {400, 401, 403, 404, 405, 409, 413, 429, 500}

# (class, code) pairs whose class status differs from the code's catalogued status, and why.
CLASS_STATUS_EXCEPTIONS = {
    # "N vaults are named X; use the vault's id": an ambiguous name in the request is a bad
    # request, while the lookups that find no principal answer 404.
    ("BadRequest", "PrincipalNotFound"),
}


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


def _error_classes() -> dict[str, type[PgVaultError]]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, PgVaultError)
    }


@pytest.mark.parametrize("code", list(Code), ids=lambda c: c.value)
def test_every_code_has_a_status_and_a_recommendation(code: Code) -> None:
    assert code.status in STATUSES
    assert code.action.strip()
    assert code.action.endswith(".")
    assert code.name == code.value  # so Code.stored's name lookup finds it by value


def test_codes_are_their_wire_strings() -> None:
    assert Code.UserErrorDBNotFound == "UserErrorDBNotFound"
    assert json.dumps({"code": Code.WorkerLost}) == '{"code": "WorkerLost"}'
    assert Code.stored("UserErrorRestoreFailed") is Code.UserErrorRestoreFailed
    with pytest.raises(KeyError):
        Code.stored("NoSuchCode")


def test_recommendation_falls_back_to_the_codes_default() -> None:
    err = NotFound("Backup instance 'x' not found.")
    assert err.code is Code.ResourceNotFound
    assert err.recommended_action == Code.ResourceNotFound.action
    info = err.to_body()["error"]["additionalInfo"][0]["info"]
    assert info["recommendedAction"] == [Code.ResourceNotFound.action]
    given = UserError("bad", code=Code.UserErrorDBNotFound, recommended_action="Do this.")
    assert given.recommended_action == "Do this."
    assert given.to_body()["error"]["code"] == "UserErrorDBNotFound"


def test_validation_failed_keeps_the_first_code() -> None:
    first = UserError("one", code=Code.UserErrorDBUserAuthFailed)
    both = ValidationFailed([first, UserError("two", code=Code.UserErrorServerUnreachable)])
    assert both.code is Code.UserErrorDBUserAuthFailed
    assert both.recommended_action == Code.UserErrorDBUserAuthFailed.action
    assert [d["code"] for d in both.to_body()["error"]["details"]] == [
        "UserErrorDBUserAuthFailed",
        "UserErrorServerUnreachable",
    ]


@pytest.mark.parametrize("cls", list(_error_classes().values()), ids=lambda c: c.__name__)
def test_each_class_default_code_is_catalogued_with_its_status(cls: type[PgVaultError]) -> None:
    assert isinstance(cls.default_code, Code)
    assert cls.default_code.status == cls.status


def test_every_error_class_lives_in_errors_py() -> None:
    """The documented tree is complete: no PgVaultError subclass is defined elsewhere."""
    names = set(_error_classes())
    strays = []
    for path, tree in _sources():
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id in names for b in node.bases
            ):
                strays.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert strays == []
    doc = errors.__doc__ or ""
    assert all(name in doc for name in names)


def test_no_code_string_literal_remains() -> None:
    """Codes are Code members; `code="..."` would bypass the catalogue (and mypy)."""
    found = []
    for path, tree in _sources():
        if 'code="' in path.read_text() and path.parent.name != "cli":
            found.append(f'{path.relative_to(PACKAGE)}: code="')
        for node in ast.walk(tree):
            keyword = isinstance(node, ast.keyword) and node.arg in ("code", "default_code")
            assigned = isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("code", "default_code") for t in node.targets
            )
            value = getattr(node, "value", None) if keyword or assigned else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {value.value}")
    assert found == []


def _raise_sites() -> list[tuple[str, str, str]]:
    """(where, class name, code) for each `SomeError(..., code=Code.X)` in pgvault/."""
    classes = _error_classes()
    sites = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in classes:
                continue
            for kw in node.keywords:
                v = kw.value
                if (
                    kw.arg == "code"
                    and isinstance(v, ast.Attribute)
                    and isinstance(v.value, ast.Name)
                    and v.value.id == "Code"
                ):
                    where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                    sites.append((where, node.func.id, v.attr))
    return sites


def test_catalogued_status_matches_the_class_each_code_is_raised_with() -> None:
    """The class decides a response's status; the catalogue must agree with it."""
    classes = _error_classes()
    sites = _raise_sites()
    assert len(sites) > 100  # the scan sees the raise sites
    wrong = [
        f"{where}: {cls}({code}) answers {classes[cls].status}, catalogue says {Code[code].status}"
        for where, cls, code in sites
        if classes[cls].status != Code[code].status and (cls, code) not in CLASS_STATUS_EXCEPTIONS
    ]
    assert wrong == []


def test_user_error_codes_are_400s_or_documented() -> None:
    """Azure's UserError* codes: 400 unless a state conflict (409), a lookup (404) or a job."""
    for code in Code:
        if code.value.startswith("UserError"):
            assert code.status in (400, 404, 409, 500), code


def test_bad_request_is_400() -> None:
    assert BadRequest("x").to_body()["error"]["code"] == "BadRequest"
    assert BadRequest.status == Code.BadRequest.status == 400


def test_every_catalogued_code_is_used() -> None:
    """No dead entries: each code is some class's default or appears at a raise site."""
    text = "\n".join(
        p.read_text() for p, _ in _sources() if not (p.name == "errors.py" and p.parent == PACKAGE)
    )
    defaults = {cls.default_code for cls in _error_classes().values()}
    unused = [c.name for c in Code if c not in defaults and f"Code.{c.name}" not in text]
    assert unused == []


# -- failures keep their diagnosis ------------------------------------------------------------


def test_a_failing_upload_source_is_not_reported_as_storage() -> None:
    def source() -> Iterator[bytes]:
        yield b"x"
        raise ValueError("bad frame")

    loc = from_url("memory://")
    with pytest.raises(PgVaultError) as info:
        loc.put_stream("d", source())
    assert not isinstance(info.value, StorageError)
    assert info.value.code is Code.InternalError
    assert "ValueError: bad frame" in info.value.message
    assert isinstance(info.value.__cause__, ValueError)


def test_a_store_failure_is_a_storage_error() -> None:
    with pytest.raises(StorageError) as info:
        from_url("memory://").get_bytes("missing")
    assert info.value.code is Code.StorageObjectNotFound


def _account(kind: str, settings: dict[str, Any], secret: bytes | None = None) -> StorageAccount:
    return StorageAccount(id="a1", name="acct", kind=kind, settings=settings, secret=secret)


def _policy(root: Path) -> StoragePolicy:
    return StoragePolicy(local_roots=(root,), endpoint_allow=("127.0.0.0/8",))


def test_container_the_backend_refuses_is_not_accessible(tmp_path: Path) -> None:
    sealed = Cipher(bytes(32)).encrypt(b'{"key": "k"}', "a1")
    account = _account("s3", {"bucket": "b", "endpoint": "http://127.0.0.1:9"}, sealed)
    account.settings["accessKeyId"] = "id"
    with pytest.raises(UserError) as info:
        accounts._create_backend_container(Cipher(bytes(32)), account, "c1", _policy(tmp_path))
    assert info.value.code is Code.UserErrorContainerNotAccessible
    assert "127.0.0.1" not in info.value.message  # says nothing about what answered


def test_local_container_on_a_file_is_a_refused_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    account = _account("local", {"path": str(blocker)})
    with pytest.raises(UserError) as info:
        accounts._create_backend_container(Cipher(bytes(32)), account, "c1", _policy(tmp_path))
    assert info.value.code is Code.StoragePathNotAllowed


def test_container_with_undecryptable_key_keeps_its_code(tmp_path: Path) -> None:
    """A wrong master key is not an unreachable container."""
    sealed = Cipher(bytes(32)).encrypt(b'{"key": "k"}', "a1")
    account = _account("s3", {"bucket": "b", "endpoint": "http://127.0.0.1:9"}, sealed)
    with pytest.raises(PgVaultError) as info:
        accounts._create_backend_container(Cipher(b"\x01" * 32), account, "c1", _policy(tmp_path))
    assert info.value.code is Code.SecretDecryptionFailed
