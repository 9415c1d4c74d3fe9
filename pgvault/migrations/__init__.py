"""Alembic migrations shipped in the package; `upgrade(engine)` runs them at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

HERE = Path(__file__).parent


def config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(config(engine), revision)


def env_filter(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Autogenerate compares pgvault's tables only: Procrastinate's queue (migration 0007)
    lives in the same database but is not in pgvault's models."""
    return not (type_ == "table" and reflected and (name or "").startswith("procrastinate_"))
