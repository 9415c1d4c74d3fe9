"""Where storage accounts may point, local writes that follow no symlink, and file modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvault.config import Settings
from pgvault.context import Context
from pgvault.crypto import load_or_create_key
from pgvault.errors import Code, PgVaultError, StorageError
from pgvault.storage.backends import (
    ENDPOINT_REFUSED,
    PATH_REFUSED,
    StoragePolicy,
    local_location,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask, so the modes seen are the ones pgvault sets, not the umask's."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


def _refused_path(policy: StoragePolicy, path: str) -> None:
    with pytest.raises(PgVaultError) as info:
        policy.local_root_of(path)
    assert info.value.code is Code.StoragePathNotAllowed
    assert info.value.message == PATH_REFUSED


def test_local_paths_only_under_a_root_and_canonical(tmp_path: Path, root: Path) -> None:
    keys = tmp_path / "home" / "keys"
    keys.mkdir(parents=True)
    policy = StoragePolicy(local_roots=(root,), protected=(keys,))
    real, found = policy.local_root_of(str(root / "a" / ".." / "b"))
    assert (real, found) == (root / "b", root)
    assert policy.local_root_of(str(root))[0] == root
    (root / "out").symlink_to(keys)
    (root / "file").write_text("x")
    for path in (
        "/",
        "/etc",
        "/proc/self",
        str(tmp_path),
        str(keys),
        str(root / "out"),
        str(root / "out" / "deeper"),
        str(root / ".." / "home"),
        str(root / "file"),
        "relative",
        str(root) + "\x00x",
    ):
        _refused_path(policy, path)


def test_a_root_that_holds_pgvault_state_still_refuses_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    policy = StoragePolicy(local_roots=(tmp_path,), protected=(keys,))
    _refused_path(policy, str(tmp_path))  # would contain the keys
    _refused_path(policy, str(keys / "sub"))
    assert policy.local_root_of(str(tmp_path / "files"))[0] == tmp_path / "files"


def test_endpoint_lists() -> None:
    everything = ("0.0.0.0/0", "::/0")
    allowed = StoragePolicy(local_roots=(), endpoint_allow=("127.0.0.0/8",))
    allowed.check_endpoint("http://127.0.0.1:9000")
    allowed.check_endpoint("https://127.0.0.2")
    by_name = StoragePolicy(local_roots=(), endpoint_allow=("localhost",))
    by_name.check_endpoint("http://localhost:1")
    refused = [
        (StoragePolicy(local_roots=()), "http://127.0.0.1:9000"),  # loopback, not allowed
        (StoragePolicy(local_roots=()), "http://10.0.0.1"),
        (StoragePolicy(local_roots=(), endpoint_allow=everything), "http://169.254.169.254"),
        (StoragePolicy(local_roots=(), endpoint_allow=everything), "http://[fe80::1]"),
        (StoragePolicy(local_roots=(), endpoint_allow=everything), "http://[fd00:ec2::254]"),
        (
            StoragePolicy(local_roots=(), endpoint_allow=everything),
            "http://[::ffff:169.254.169.254]",
        ),
        (
            StoragePolicy(local_roots=(), endpoint_allow=everything, endpoint_deny=("127.0.0.1",)),
            "http://127.0.0.1",
        ),
        (
            StoragePolicy(local_roots=(), endpoint_allow=everything, endpoint_deny=("localhost",)),
            "http://localhost",
        ),
        (allowed, "ftp://127.0.0.1"),
        (allowed, "http://"),
        (allowed, "http://127.0.0.1:99999"),
        (allowed, "http://no-such-host.invalid"),
    ]
    for policy, url in refused:
        with pytest.raises(PgVaultError) as info:
            policy.check_endpoint(url)
        assert info.value.code is Code.StorageEndpointNotAllowed, url
        assert info.value.message == ENDPOINT_REFUSED, url


def test_public_addresses_pass_unless_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(host: str, *_a: object, **_k: object) -> list[tuple[object, ...]]:
        return [(2, 1, 6, "", ("93.184.216.34", 443)), (2, 1, 6, "", ("10.0.0.5", 443))]

    policy = StoragePolicy(local_roots=())
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: resolve("x")[:1])
    policy.check_endpoint("https://storage.example")
    # Every resolved address is checked: one private address among public ones refuses.
    monkeypatch.setattr("socket.getaddrinfo", resolve)
    with pytest.raises(PgVaultError):
        policy.check_endpoint("https://storage.example")
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: resolve("x")[:1])
    with pytest.raises(PgVaultError):
        StoragePolicy(local_roots=(), endpoint_deny=("93.184.0.0/16",)).check_endpoint(
            "https://storage.example"
        )


def test_local_writes_replace_a_planted_symlink(tmp_path: Path, root: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep")
    loc = local_location(root)
    (root / "obj").symlink_to(secret)
    loc.put_bytes("obj", b"new")
    assert secret.read_text() == "keep"
    assert not (root / "obj").is_symlink()
    assert (root / "obj").read_bytes() == b"new"


def test_local_writes_refuse_a_symlinked_directory(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    loc = local_location(root)
    (root / "dir").symlink_to(outside)
    with pytest.raises(StorageError):
        loc.child("dir").put_bytes("obj", b"x")
    with pytest.raises(StorageError):
        loc.put_stream("dir/obj", [b"x"])
    assert list(outside.iterdir()) == []


def test_container_refuses_a_swapped_symlink(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    policy = StoragePolicy(local_roots=(root,))
    account = str(policy.local_root_of(str(root / "acct"))[0])
    policy.local_container(account, "cont", "acct/cont").put_bytes("f", b"x")
    (root / "acct" / "cont").rename(root / "acct" / "was")
    (root / "acct" / "cont").symlink_to(outside)
    with pytest.raises(PgVaultError) as info:
        policy.local_container(account, "cont", "acct/cont")
    assert info.value.code is Code.StoragePathNotAllowed
    assert list(outside.iterdir()) == []


@pytest.mark.usefixtures("open_umask")
def test_local_store_modes_do_not_depend_on_the_umask(root: Path) -> None:
    store = local_location(root / "datastore")
    store.child("a/b").put_stream("obj", [b"x"])
    assert _mode(root / "datastore") == 0o700
    assert _mode(root / "datastore" / "a") == 0o700
    assert _mode(root / "datastore" / "a" / "b") == 0o700
    assert _mode(root / "datastore" / "a" / "b" / "obj") == 0o600
    policy = StoragePolicy(local_roots=(root,))
    policy.local_container(str(root), "cont", "c").put_bytes("restored.dump", b"x")
    assert _mode(root / "cont") == 0o700
    assert _mode(root / "cont" / "restored.dump") == 0o640


@pytest.mark.usefixtures("open_umask")
def test_home_keys_and_metadata_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "keys").mkdir(mode=0o755)
    load_or_create_key(home / "keys" / "master.key")
    (home / "keys" / "master.key").chmod(0o644)
    ctx = Context.create(Settings(home=home))
    try:
        ctx.migrate()
        with ctx.db.session() as s:
            s.connection().exec_driver_sql("SELECT 1")
        ctx.datastore.child("v").put_bytes("obj", b"x")
        assert _mode(home) == 0o700
        assert _mode(home / "keys") == 0o700
        for key in ("master.key", "token-signing.key"):
            assert _mode(home / "keys" / key) == 0o600
        for name in ("pgvault.db", "pgvault.db-wal", "pgvault.db-shm"):
            if (home / name).exists():
                assert _mode(home / name) == 0o600, name
        assert _mode(home / "datastore") == 0o700
        assert _mode(home / "datastore" / "v") == 0o700
        assert _mode(home / "datastore" / "v" / "obj") == 0o600
        assert _mode(home / "storage-accounts") == 0o700
    finally:
        ctx.db.dispose()


def test_a_home_that_cannot_be_made_private_refuses_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)

    def denied(*_a: object, **_k: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("pgvault.context.os.chmod", denied)
    with pytest.raises(PgVaultError) as info:
        Context.create(Settings(home=home))
    assert info.value.code is Code.HomeNotPrivate
    assert "0700" in info.value.message


def test_settings_read_the_storage_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PGVAULT_HOME", str(tmp_path))
    assert Settings.from_env().storage_roots == (tmp_path / "storage-accounts",)
    monkeypatch.setenv("PGVAULT_LOCAL_STORAGE_ROOTS", os.pathsep.join(["/srv/a", "/srv/b"]))
    monkeypatch.setenv("PGVAULT_STORAGE_ENDPOINT_ALLOW", "127.0.0.0/8, minio.lan")
    monkeypatch.setenv("PGVAULT_STORAGE_ENDPOINT_DENY", "10.9.0.0/16")
    st = Settings.from_env()
    assert st.storage_roots == (Path("/srv/a"), Path("/srv/b"))
    assert st.storage_endpoint_allow == ("127.0.0.0/8", "minio.lan")
    assert st.storage_endpoint_deny == ("10.9.0.0/16",)
