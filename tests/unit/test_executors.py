"""The executor settings and the pure parts of scale-out: no PostgreSQL needed here.

The procrastinate executor itself runs in tests/integration/test_procrastinate_workers.py
(three worker processes) and test_executor_seam.py (deferral in the row's transaction).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgvault import executors, server
from pgvault.config import Settings
from pgvault.errors import Code, PgVaultError
from pgvault.scheduler import spread_offset


def test_embedded_is_the_default_and_needs_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env()
    assert settings.executor == "embedded"
    assert (settings.source_server_concurrency, settings.target_server_concurrency) == (1, 1)
    assert settings.global_concurrency == 0
    assert not executors.uses_procrastinate(Settings(home=tmp_path))


def test_executor_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PGVAULT_EXECUTOR": "Procrastinate",
        "PGVAULT_SOURCE_SERVER_CONCURRENCY": "2",
        "PGVAULT_TARGET_SERVER_CONCURRENCY": "3",
        "PGVAULT_GLOBAL_CONCURRENCY": "8",
        "PGVAULT_WORKER_CONCURRENCY": "4",
        "PGVAULT_LOST_JOB_RETRIES": "0",
        "PGVAULT_SCHEDULE_SPREAD_SECONDS": "900",
        "PGVAULT_STALE_AFTER_SECONDS": "12.5",
    }.items():
        monkeypatch.setenv(name, value)
    st = Settings.from_env()
    assert st.executor == "procrastinate"
    assert (st.source_server_concurrency, st.target_server_concurrency) == (2, 3)
    assert (st.global_concurrency, st.worker_concurrency, st.lost_job_retries) == (8, 4, 0)
    assert (st.schedule_spread_seconds, st.stale_after_seconds) == (900, 12.5)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PGVAULT_EXECUTOR", "celery", '"embedded" or "procrastinate"'),
        ("PGVAULT_SOURCE_SERVER_CONCURRENCY", "0", "a positive integer"),
        ("PGVAULT_GLOBAL_CONCURRENCY", "-1", "a whole number, 0 or more"),
        ("PGVAULT_HEARTBEAT_SECONDS", "0", "positive"),
    ],
)
def test_bad_executor_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=says):
        Settings.from_env()


def test_procrastinate_needs_postgresql_metadata(tmp_path: Path) -> None:
    sqlite = Settings(home=tmp_path, executor="procrastinate")
    with pytest.raises(ValueError, match="PGVAULT_DATABASE_URL=postgresql"):
        executors.uses_procrastinate(sqlite)
    pg = Settings(home=tmp_path, executor="procrastinate", database_url="postgresql://h/db")
    assert executors.uses_procrastinate(pg)


def test_worker_refuses_the_embedded_executor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGVAULT_HOME", str(tmp_path))
    monkeypatch.delenv("PGVAULT_EXECUTOR", raising=False)
    with pytest.raises(PgVaultError) as caught:
        server.worker(None, print)
    assert caught.value.code == Code.WorkerSettingsInvalid
    assert "PGVAULT_EXECUTOR" in caught.value.message
    assert not (tmp_path / "keys").exists(), "a refused worker touches nothing"


def test_spread_is_fixed_per_instance_and_inside_the_window() -> None:
    ids = [f"instance-{n}" for n in range(200)]
    offsets = [spread_offset(i, 600).total_seconds() for i in ids]
    assert all(0 <= o < 600 for o in offsets)
    assert offsets == [spread_offset(i, 600).total_seconds() for i in ids]  # deterministic
    assert len(set(offsets)) > 150, "instances sharing a slot start apart"
    assert max(offsets) - min(offsets) > 500, "spread over the window"
    assert spread_offset("instance-1", 0).total_seconds() == 0  # off: all at the slot


def test_serve_refuses_procrastinate_on_sqlite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGVAULT_HOME", str(tmp_path))
    monkeypatch.setenv("PGVAULT_EXECUTOR", "procrastinate")
    monkeypatch.delenv("PGVAULT_DATABASE_URL", raising=False)
    with pytest.raises(PgVaultError) as caught:
        server.serve("127.0.0.1", 0, None, print)
    assert caught.value.code == Code.WorkerSettingsInvalid
    assert not (tmp_path / "keys").exists(), "a refused start touches nothing"


def test_serve_no_worker_runs_no_jobs(tmp_path: Path) -> None:
    from pgvault.api.app import create_app
    from pgvault.context import Context

    ctx = Context.create(Settings(home=tmp_path / "home", datastore_url="memory://"))
    try:
        app = create_app(ctx, run_jobs=False)
        assert isinstance(app.state.service.pool, executors.NoExecutor)
        assert type(create_app(ctx).state.service.pool).__name__ == "WorkerPool"
    finally:
        ctx.db.dispose()
