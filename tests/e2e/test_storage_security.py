"""A Contributor against storage accounts, on a real `pgvault serve` (issue 8, findings 2-4).

A Contributor may manage resources but holds no secret. Through storage accounts it tried to
write on the host (local paths anywhere, re-pointing an account at pgvault's keys, symlinks),
to make the server sign requests with its own ambient AWS credentials or call the instance
metadata service, and to send an admin's stored key to its own endpoint. Every attempt must be
refused with one code per kind of refusal, and nothing written or sent. Modes of everything
pgvault writes are checked after a backup and a restore as files.

The server runs with AWS_* / AZURE_* credentials in its environment (the ambient credentials
the attacker wants used), loopback endpoints allowed and 10.0.0.0/8 denied by the operator.
A fake S3 endpoint on 127.0.0.1 records every request it receives.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    HOST,
    SOURCE_DB,
    PgvaultServer,
    superuser_connstr,
)
from tests.support.pg import PgCluster, free_port

REGION = "eastus"
AMBIENT_KEY_ID = "AKIAAMBIENTSERVERKEY"
AMBIENT_SECRET = "ambient-server-secret-key"
AMBIENT_TOKEN = "ambient-session-token"
AMBIENT = {
    "AWS_ACCESS_KEY_ID": AMBIENT_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": AMBIENT_SECRET,
    "AWS_SESSION_TOKEN": AMBIENT_TOKEN,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AZURE_STORAGE_ACCOUNT_KEY": "YW1iaWVudC1henVyZS1rZXk=",
    "AZURE_STORAGE_TOKEN": "ambient-azure-bearer",
}


# -- a fake S3 endpoint that records what it receives ---------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeS3:
    url: str
    requests: list[Recorded] = field(default_factory=list)

    def everything(self) -> str:
        return "\n".join(f"{r.method} {r.path} {r.headers}" for r in self.requests)


@contextlib.contextmanager
def fake_s3() -> Iterator[FakeS3]:
    """An HTTP server on 127.0.0.1 that answers like S3 (200 with an ETag to PUT, 204 to
    DELETE, an empty DeleteObjects result; 403 for the bucket `forbidden`, 404 for
    `missing`) and records each request."""
    fake = FakeS3("")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            fake.requests.append(Recorded(self.command, self.path, dict(self.headers.items())))
            length = int(self.headers.get("Content-Length") or 0)
            received = self.rfile.read(length) if length else b""
            bucket = self.path.lstrip("/").split("/", 1)[0]
            status = {"forbidden": 403, "missing": 404}.get(bucket)
            if status is None:
                status = 204 if self.command == "DELETE" else 200
            body = b"" if status in (200, 204) else b"<Error><Code>Denied</Code></Error>"
            if status == 200 and self.command == "POST" and "delete" in self.path:
                deleted = b"".join(
                    b"<Deleted>" + k + b"</Deleted>"
                    for k in re.findall(rb"<Key>.*?</Key>", received)
                )
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?><DeleteResult>%s</DeleteResult>'
                    % deleted
                )
            self.send_response(status)
            self.send_header("ETag", '"e"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_GET = do_DELETE = do_HEAD = do_POST = _answer

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer((HOST, 0), Handler)
    fake.url = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- the server, the admin's setup and the Contributor ---------------------------------------


@dataclass
class Setup:
    srv: PgvaultServer
    base: Path
    root: Path
    group: str
    contributor: str
    identity: str
    point: str
    fake: FakeS3

    def account_id(self, name: str) -> str:
        return f"{self.group}/providers/Microsoft.Storage/storageAccounts/{name}"

    def put_account(self, name: str, backend: dict[str, Any], token: str | None = None) -> Any:
        return self.srv.api(
            "PUT",
            self.account_id(name),
            token=token or self.contributor,
            json={"location": REGION, "properties": {"backend": backend}},
        )

    def put_container(self, account: str, name: str, token: str | None = None) -> Any:
        return self.srv.api(
            "PUT",
            f"{self.account_id(account)}/blobServices/default/containers/{name}",
            token=token or self.contributor,
        )


@pytest.fixture(scope="module")
def setup(source_pg: PgCluster) -> Iterator[Setup]:
    base = Path(tempfile.mkdtemp(prefix="pgvault-e2e-storage-"))
    home = base / "home"
    home.mkdir()
    home.chmod(0o755)  # as an operator might leave it: start must tighten it
    srv = PgvaultServer(home, free_port(), base / "serve.log")
    srv.env.update(AMBIENT)
    srv.env["PGVAULT_STORAGE_ENDPOINT_DENY"] = "10.0.0.0/8"
    root = base / "storage"
    root.mkdir()
    srv.env["PGVAULT_LOCAL_STORAGE_ROOTS"] = str(root)
    with fake_s3() as fake:
        try:
            srv.start()
            yield _admin_setup(srv, base, root, source_pg, fake)
        finally:
            srv.stop()
            if not srv.log_reported:
                print(f"\n----- pgvault serve log ({srv.url}) -----\n{srv.log()[-20000:]}")
            shutil.rmtree(base, ignore_errors=True)


def _admin_setup(
    srv: PgvaultServer, base: Path, root: Path, source_pg: PgCluster, fake: FakeS3
) -> Setup:
    """As the admin: a protected database with one backup; a Contributor on its group."""
    server = srv.cli_json(
        "server", "add", "--name", "src", "--host", HOST, "--port", str(source_pg.port),
        "--region", REGION,
    )  # fmt: skip
    kv = srv.cli_json("keyvault", "create", "--name", "kv1", "--region", REGION)
    secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "srcpw",
        input=superuser_connstr(source_pg),
    )["properties"]["secretUri"]  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", "v1", "--region", REGION)
    identity = vault["identity"]["principalId"]
    srv.cli_json("policy", "create", "--vault-name", "v1", "--name", "weekly")
    srv.grant(identity, "Reader", server["id"])
    srv.grant(identity, "Key Vault Secrets User", kv["id"])
    srv.cli_json(
        "instance", "create", "--vault-name", "v1", "--server", "src", "--database", SOURCE_DB,
        "--policy", "weekly", "--secret", secret, "--name", "shop1",
    )  # fmt: skip
    job = srv.cli_json("backup", "now", "--vault-name", "v1", "--instance", "shop1", "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    points = srv.cli_json("recovery-point", "list", "--vault-name", "v1", "--instance", "shop1")
    group: str = vault["id"].split("/providers/", 1)[0]
    robot = srv.cli_json("principal", "create", "--name", "mallory", "--type", "service-principal")
    srv.grant(robot["clientId"], "Contributor", group)
    token = srv.client_token(robot["clientId"], robot["secret"])
    return Setup(srv, base, root, group, token, identity, points["value"][0]["name"], fake)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _refused(resp: httpx.Response, code: str) -> str:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == code, resp.text
    message: str = error["message"]
    return message


def _restore_files(s: Setup, account: str, container: str, prefix: str) -> Any:
    url = f"{s.srv.url}/blob/{account}/{container}"
    proc = s.srv.cli(
        "restore", "files", "--vault-name", "v1", "--instance", "shop1",
        "--recovery-point", s.point, "--container", url, "--file-prefix", prefix,
        "--wait", "--output", "json", check=False,
    )  # fmt: skip
    return proc


# -- finding 2: local accounts stay inside the operator's roots -------------------------------


def test_contributor_cannot_put_a_local_account_outside_the_roots(setup: Setup) -> None:
    s = setup
    home = s.srv.home
    keys_before = _tree(home / "keys")
    (s.root / "escape").symlink_to(home / "keys")
    (s.root / "afile").write_text("x")
    attempts = [
        "/",
        "/etc",
        "/proc/self",
        str(home),
        str(home / "keys"),
        str(home / "datastore"),
        str(s.root / "escape"),  # inside the root, resolves outside it
        str(s.root / "escape" / "sub"),
        f"{s.root}/../home/keys",
        str(s.root / "afile"),  # not a directory: the same answer as anything else
        str(s.base / "elsewhere" / "missing"),  # missing: the same answer
        "relative/path",
    ]
    messages = {
        path: _refused(
            s.put_account("evil", {"type": "local", "path": path}), "StoragePathNotAllowed"
        )
        for path in attempts
    }
    assert len(set(messages.values())) == 1, messages  # nothing tells one reason from another
    assert s.srv.api("GET", s.account_id("evil"), token=s.contributor).status_code == 404
    assert _tree(home / "keys") == keys_before
    assert not list(Path("/etc").glob(".pgvault-write-probe*"))
    assert sorted(p.name for p in s.root.iterdir()) == ["afile", "escape"]


def test_contributor_cannot_repoint_an_account_or_escape_by_symlink(setup: Setup) -> None:
    s = setup
    keys = s.srv.home / "keys"
    keys_before = _tree(keys)
    made = s.put_account("sa1", {"type": "local", "path": str(s.root / "sa1")})
    assert made.status_code in (200, 201), made.text
    container = s.put_container("sa1", "dumps")
    assert container.status_code in (200, 201), container.text
    s.srv.grant(s.identity, "Storage Blob Data Contributor", container.json()["id"])

    # Re-pointing the account at pgvault's keys is refused the same way; the account is unchanged.
    for path in (str(keys), str(s.srv.home), "/etc"):
        resp = s.put_account("sa1", {"type": "local", "path": path})
        _refused(resp, "StoragePathNotAllowed")
    shown = s.srv.api("GET", s.account_id("sa1"), token=s.contributor).json()
    assert shown["properties"]["backend"]["path"] == str(s.root / "sa1")

    # A symlink planted as a file name inside the container is replaced, never written through.
    dumps = s.root / "sa1" / "dumps"
    (dumps / "p1.dump").symlink_to(keys / "master.key")
    (dumps / "p1.manifest.json").symlink_to(keys / "token-signing.key")
    _restore_files(s, "sa1", "dumps", "p1")
    assert _tree(keys) == keys_before

    # The container directory swapped for a symlink to keys/: the restore is refused.
    moved = s.root / "sa1" / "dumps-real"
    dumps.rename(moved)
    dumps.symlink_to(keys)
    try:
        refused = _restore_files(s, "sa1", "dumps", "p2")
        assert refused.returncode != 0 or '"Failed"' in refused.stdout, refused
        assert "StoragePathNotAllowed" in refused.stdout + refused.stderr, refused
    finally:
        dumps.unlink()
        moved.rename(dumps)
    assert _tree(keys) == keys_before
    assert sorted(p.name for p in keys.iterdir()) == ["master.key", "token-signing.key"]


# -- finding 4: modes -------------------------------------------------------------------------


def test_home_datastore_and_restored_files_have_private_modes(setup: Setup) -> None:
    s = setup
    home = s.srv.home
    made = s.put_account("sa2", {"type": "local", "path": str(s.root / "sa2")})
    assert made.status_code in (200, 201), made.text
    container = s.put_container("sa2", "out")
    assert container.status_code in (200, 201), container.text
    s.srv.grant(s.identity, "Storage Blob Data Contributor", container.json()["id"])
    done = _restore_files(s, "sa2", "out", "m1")
    assert done.returncode == 0, done
    assert '"Completed"' in done.stdout, done.stdout

    assert _mode(home) == 0o700  # it was 0755: start tightened it
    for name in ("pgvault.db", "pgvault.db-wal", "pgvault.db-shm", "credentials.json"):
        if (home / name).exists():
            assert _mode(home / name) == 0o600, name
    assert (home / "pgvault.db").exists()
    checked = 0
    for top in ("keys", "datastore", "archive", "storage-accounts"):
        if not (home / top).exists():
            continue
        assert _mode(home / top) == 0o700, top
        for p in (home / top).rglob("*"):
            assert not p.is_symlink(), p
            assert _mode(p) == (0o700 if p.is_dir() else 0o600), p
            checked += 1
    assert checked >= 4  # two keys and at least a backup's dump and manifest

    out = s.root / "sa2" / "out"
    assert _mode(s.root / "sa2") == 0o700
    assert _mode(out) == 0o700
    restored = sorted(out.iterdir())
    assert [p.name for p in restored] == ["m1", "m1.manifest.json"]  # a -Fd archive + manifest
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 3  # toc.dat, a table's data, the manifest
    for p in files:
        assert _mode(p) == 0o640, p  # the documented mode of restored files
    for p in out.rglob("*"):
        assert p.is_file() or not _mode(p) & 0o007, p  # nothing for other users


# -- finding 3: no ambient credentials, no internal endpoints ---------------------------------


def _no_ambient(fake: FakeS3) -> None:
    seen = fake.everything()
    assert AMBIENT_KEY_ID not in seen
    assert AMBIENT_TOKEN not in seen
    assert "ambient-azure-bearer" not in seen


def test_s3_account_without_a_key_is_refused_and_nothing_is_sent(setup: Setup) -> None:
    s = setup
    before = len(s.fake.requests)
    for backend in (
        {"type": "s3", "bucket": "b1", "endpoint": s.fake.url},
        {"type": "s3", "bucket": "b1", "endpoint": s.fake.url, "accessKeyId": "AKIAMALLORY"},
        {"type": "azure", "accountName": "a1", "endpoint": f"{s.fake.url}/a1"},
    ):
        _refused(s.put_account("nokey", backend), "StorageAccountKeyRequired")
    assert s.srv.api("GET", s.account_id("nokey"), token=s.contributor).status_code == 404
    assert len(s.fake.requests) == before, s.fake.everything()
    _no_ambient(s.fake)


def test_s3_account_signs_only_with_its_own_key(setup: Setup) -> None:
    s = setup
    backend = {
        "type": "s3", "bucket": "b2", "endpoint": s.fake.url, "region": "us-east-1",
        "accessKeyId": "AKIAMALLORYOWN", "secretAccessKey": "mallory-secret",
    }  # fmt: skip
    made = s.put_account("mallorys3", backend)
    assert made.status_code in (200, 201), made.text
    before = len(s.fake.requests)
    created = s.put_container("mallorys3", "cont1")
    assert created.status_code in (200, 201), created.text
    sent = s.fake.requests[before:]
    assert sent, "the container's probe reached the endpoint"
    for r in sent:
        auth = {k.lower(): v for k, v in r.headers.items()}
        assert "Credential=AKIAMALLORYOWN/" in auth.get("authorization", ""), r
        assert "x-amz-security-token" not in auth, r
    _no_ambient(s.fake)


def test_internal_endpoints_are_refused_with_one_message(setup: Setup) -> None:
    s = setup
    key = {"accessKeyId": "AKIAMALLORY", "secretAccessKey": "k"}
    endpoints = [
        "http://169.254.169.254",  # instance metadata: refused whatever the operator allows
        "http://169.254.169.254.nip.io.invalid",  # does not resolve: the same answer
        "http://[fe80::1]:80",
        "http://10.1.2.3:9000",  # a range the operator denied
        "http://192.168.1.10:9000",  # private, not allowed
        "http://0.0.0.0:9000",
        "ftp://127.0.0.1/",
    ]
    messages = set()
    for endpoint in endpoints:
        for backend in (
            {"type": "s3", "bucket": "b", "endpoint": endpoint, **key},
            {"type": "azure", "accountName": "a", "endpoint": endpoint, "accountKey": "a2V5"},
        ):
            resp = s.put_account("internal", backend)
            messages.add(_refused(resp, "StorageEndpointNotAllowed"))
    assert len(messages) == 1, messages
    assert s.srv.api("GET", s.account_id("internal"), token=s.contributor).status_code == 404


def test_unreachable_and_refusing_endpoints_look_the_same(setup: Setup) -> None:
    s = setup
    messages = set()
    for bucket in ("forbidden", "missing"):
        name = f"probe{bucket}"
        backend = {
            "type": "s3", "bucket": bucket, "endpoint": s.fake.url,
            "accessKeyId": "AKIAMALLORY", "secretAccessKey": "k",
        }  # fmt: skip
        assert s.put_account(name, backend).status_code in (200, 201)
        resp = s.put_container(name, "cont1")
        messages.add(_refused(resp, "UserErrorContainerNotAccessible").replace(name, "NAME"))
    assert len(messages) == 1, messages
    assert "403" not in next(iter(messages))
    assert "404" not in next(iter(messages))


def test_repointing_the_admins_account_needs_its_key(setup: Setup) -> None:
    s = setup
    admin = s.srv.token()
    backend = {
        "type": "s3", "bucket": "adminbucket", "endpoint": s.fake.url, "region": "us-east-1",
        "accessKeyId": "AKIAADMINSTORED", "secretAccessKey": "admin-stored-secret",
    }  # fmt: skip
    made = s.put_account("admins3", backend, token=admin)
    assert made.status_code in (200, 201), made.text

    with fake_s3() as attacker:
        before = len(s.fake.requests)
        no_key = {k: v for k, v in backend.items() if k != "secretAccessKey"}
        for change in (
            {"endpoint": attacker.url},
            {"bucket": "otherbucket"},
            {"accessKeyId": "AKIAMALLORY"},
            {"region": "eu-west-1"},
        ):
            resp = s.put_account("admins3", {**no_key, **change})
            _refused(resp, "StorageAccountKeyRequired")
        azure = {"type": "azure", "accountName": "x", "endpoint": attacker.url}
        _refused(s.put_account("admins3", azure), "StorageAccountKeyRequired")
        # The account still points where the admin put it; a container there goes to the
        # admin's endpoint, never the attacker's.
        shown = s.srv.api("GET", s.account_id("admins3"), token=s.contributor).json()
        assert shown["properties"]["backend"]["endpoint"] == s.fake.url
        assert s.put_container("admins3", "cont1").status_code in (200, 201)
        assert attacker.requests == []
        assert len(s.fake.requests) > before
    # The same settings without the key are an idempotent PUT and keep the stored key.
    same = s.put_account("admins3", no_key)
    assert same.status_code in (200, 201), same.text
