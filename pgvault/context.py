"""The running service's dependencies, built once at start and passed down explicitly."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pgvault import migrations, regions
from pgvault import models as _tables  # noqa: F401  (every table known before the first flush)
from pgvault.clock import Clock, SystemClock
from pgvault.config import Settings
from pgvault.crypto import Cipher, load_or_create_key
from pgvault.db import Database
from pgvault.errors import Code, PgVaultError
from pgvault.storage.backends import DIR_MODE, Location, StoragePolicy, from_url, private_dir


def private_home(home: Path) -> None:
    """Make the home 0700: created so, or tightened; start is refused if it cannot be."""
    home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = home.stat()
    if stat.S_IMODE(st.st_mode) == DIR_MODE:
        return
    try:
        os.chmod(home, DIR_MODE)
    except OSError as exc:
        raise PgVaultError(
            f"PGVAULT_HOME {home} is mode {stat.S_IMODE(st.st_mode):o} and pgvault cannot "
            f"make it 0700 ({exc.strerror}): other users could read its keys and metadata.",
            code=Code.HomeNotPrivate,
        ) from exc


def load_regions(path: Path | None) -> dict[str, regions.Region]:
    """The regions file's table (none: the built-in pairs and default datastores)."""
    if path is None:
        return {}
    try:
        return regions.parse(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise PgVaultError(
            f"Cannot use the regions file {path}: {exc}", code=Code.InternalError
        ) from exc


def check_sites(settings: Settings, table: dict[str, regions.Region]) -> None:
    """A region's datastore must not be the primary one: a replica there would be no copy."""
    primary = {settings.datastore.rstrip("/"), settings.archive.rstrip("/")}
    for region in table.values():
        for url in (region.datastore, region.archive):
            if url and url.rstrip("/") in primary:
                raise PgVaultError(
                    f"The regions file gives {region.name} the primary datastore {url}; a "
                    "region's replicas need a datastore of their own.",
                    code=Code.InternalError,
                )


@dataclass
class Context:
    """Settings, metadata database, clock, secret cipher, token key and the datastore."""

    settings: Settings
    db: Database
    cipher: Cipher
    token_key: bytes
    datastore: Location
    archive: Location
    clock: Clock = field(default_factory=SystemClock)
    #: The deployment's regions (from its regions file); others use the built-in pairs.
    region_table: dict[str, regions.Region] = field(default_factory=dict)
    _sites: dict[str, tuple[Location, Location]] = field(default_factory=dict, repr=False)

    def site(self, region: str) -> tuple[Location, Location]:
        """The vault tier and archive tier of `region`'s datastore: where replicas from its
        pair land (cross-region restore reads only these)."""
        name = regions.normalize(region)
        if name not in self._sites:
            entry = self.region_table.get(name)
            vault_url, archive_url = self.settings.region_datastores(
                name, entry.datastore if entry else None, entry.archive if entry else None
            )
            self._sites[name] = (from_url(vault_url), from_url(archive_url))
        return self._sites[name]

    @property
    def base_url(self) -> str:
        """The URL clients reach this service at (used in secret URIs and blob endpoints)."""
        return (self.settings.public_url or "http://127.0.0.1:8080").rstrip("/")

    @property
    def storage_policy(self) -> StoragePolicy:
        """Where storage accounts may point (the operator's roots and endpoint lists); never
        at pgvault's own state."""
        st = self.settings
        protected = [st.home / "keys", st.credentials_file, st.home / "pgvault.db"]
        protected += [st.home / "datastore", st.home / "archive", st.home / "regions"]
        sites = [u for r in self.region_table.values() for u in (r.datastore, r.archive) if u]
        for url in (st.datastore, st.archive, *sites):
            if url.startswith("file://"):
                protected.append(Path(unquote(urlsplit(url).path)))
        if st.metadata_url.startswith("sqlite:///"):
            protected.append(Path(st.metadata_url.split("///", 1)[1]))
        return StoragePolicy(
            local_roots=st.storage_roots,
            protected=tuple(protected),
            endpoint_allow=st.storage_endpoint_allow,
            endpoint_deny=st.storage_endpoint_deny,
        )

    def migrate(self) -> None:
        """Bring the metadata schema to the newest Alembic revision (idempotent)."""
        migrations.upgrade(self.db.engine)

    @classmethod
    def create(cls, settings: Settings, clock: Clock | None = None) -> Context:
        private_home(settings.home)
        if settings.local_storage_roots is None:
            private_dir(settings.storage_roots[0])
        master = load_or_create_key(settings.keys_dir / "master.key", settings.master_key)
        token_key = load_or_create_key(settings.keys_dir / "token-signing.key")
        table = load_regions(settings.regions_file)
        check_sites(settings, table)
        regions.configure(table)
        return cls(
            region_table=table,
            settings=settings,
            db=Database(settings.metadata_url),
            cipher=Cipher(master),
            token_key=token_key,
            datastore=from_url(settings.datastore),
            archive=from_url(settings.archive),
            clock=clock or SystemClock(),
        )
