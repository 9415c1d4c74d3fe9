"""The running service's dependencies, built once at start and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgvault import migrations, models
from pgvault.clock import Clock, SystemClock
from pgvault.config import Settings
from pgvault.crypto import Cipher, load_or_create_key
from pgvault.db import Database
from pgvault.storage.backends import Location, from_url


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

    @property
    def base_url(self) -> str:
        """The URL clients reach this service at (used in secret URIs and blob endpoints)."""
        return (self.settings.public_url or "http://127.0.0.1:8080").rstrip("/")

    def migrate(self) -> None:
        """Bring the metadata schema to the newest Alembic revision (idempotent)."""
        migrations.upgrade(self.db.engine)

    @classmethod
    def create(cls, settings: Settings, clock: Clock | None = None) -> Context:
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        master = load_or_create_key(settings.keys_dir / "master.key", settings.master_key)
        token_key = load_or_create_key(settings.keys_dir / "token-signing.key")
        models.register()
        return cls(
            settings=settings,
            db=Database(settings.metadata_url),
            cipher=Cipher(master),
            token_key=token_key,
            datastore=from_url(settings.datastore),
            archive=from_url(settings.archive),
            clock=clock or SystemClock(),
        )
