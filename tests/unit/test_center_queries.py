"""The Backup center's batched reads agree with the one-row-at-a-time reads they replace:
instance views with their servers and policies in three IN queries, a page of jobs with
what each ran on, and the 24-hour and 7-day job counts in one grouped query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from pgvault import instances, jobs
from pgvault.api.app import create_app
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.instances import InstanceSpec
from pgvault.services import Service
from pgvault.services.protection import instance_view

RG = "default"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, list[str]]]:
    home = tmp_path_factory.mktemp("center") / "home"
    home.mkdir()
    ctx = Context.create(Settings(home=home, datastore_url="memory://"))
    app = create_app(ctx, start_workers=False)
    with TestClient(app):  # its start migrates the metadata database
        svc: Service = app.state.service
        yield svc, _seed(svc, ctx)
    ctx.db.dispose()


def _seed(svc: Service, ctx: Context) -> list[str]:
    sub = svc.list_subscriptions()[0].id
    svc.put_keyvault(sub, RG, "kvc", "eastus")
    svc.put_secret(sub, RG, "kvc", "s", "Server=127.0.0.1;User Id=u;Password=p;", None)
    secret = f"{ctx.base_url}/keyvaults/kvc/secrets/s"
    for name, region in (("east", "eastus"), ("west", "eastus")):
        svc.put_server(sub, RG, name, "127.0.0.1", 5432, region)
    vault_ids = []
    for v in ("a", "b"):
        vault, _ = svc.put_vault(sub, RG, v, "eastus", {}, {})
        vault_ids.append(vault.id)
        for p in ("p1", "p2"):
            svc.put_policy(sub, RG, v, p, {})
        for i, (server, policy) in enumerate((("east", "p1"), ("west", "p2"), ("east", "p2"))):
            db = svc.get_server(sub, RG, server).database_id(f"{v}db{i}")
            spec = InstanceSpec(db, f"{vault.arm_id}/backupPolicies/{policy}", secret)
            svc.put_instance(sub, RG, v, f"{v}{i}", spec)
    now = ctx.clock.now()
    with ctx.db.session() as s:
        for n, (hours, status) in enumerate(
            [(1, jobs.COMPLETED), (5, jobs.FAILED), (30, jobs.COMPLETED), (100, jobs.FAILED),
             (200, jobs.COMPLETED), (2, jobs.IN_PROGRESS)]
        ):  # fmt: skip
            job = jobs.create(s, vault_id=vault_ids[n % 2], instance_id=None,
                              operation=jobs.BACKUP, params={}, now=now - timedelta(hours=hours))  # fmt: skip
            job.status = status
    return vault_ids


def test_batched_instance_views_match_the_single_reads(seeded: tuple[Service, list[str]]) -> None:
    svc, vault_ids = seeded
    batched = svc.list_instances_in(vault_ids)
    assert len(batched) == 6
    with svc.ctx.db.session() as s:
        for view in batched:
            single = instance_view(s, view.instance)
            assert (view.vault.id, view.server.id, view.policy.id) == (
                single.vault.id, single.server.id, single.policy.id,
            )  # fmt: skip
    assert {(v.instance.name, v.server.name) for v in batched} >= {("a0", "east"), ("b1", "west")}


def test_one_query_counts_both_windows_as_two_queries_would(
    seeded: tuple[Service, list[str]],
) -> None:
    svc, vault_ids = seeded
    now = svc.ctx.clock.now()
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    assert svc.job_status_windows(vault_ids, [day, week]) == [
        svc.job_status_counts(vault_ids, day),
        svc.job_status_counts(vault_ids, week),
    ]
    assert svc.job_status_windows(vault_ids, [day]) == [
        {jobs.COMPLETED: 1, jobs.FAILED: 1, jobs.IN_PROGRESS: 1}
    ]
    assert svc.job_status_windows(vault_ids[:1], [week])[0] == svc.job_status_counts(
        vault_ids[:1], week
    )
    assert svc.job_status_windows(vault_ids, []) == []


def test_a_page_of_jobs_reads_its_instances_in_a_few_queries(
    seeded: tuple[Service, list[str]],
) -> None:
    """Jobs of many instances are joined to their vaults, instances, servers and policies in
    one IN query each, not one lookup per row (a round trip each on PostgreSQL): the count
    of statements does not grow with the page, and the rows match the one-at-a-time reads."""
    svc, _ = seeded
    ctx = svc.ctx
    sub = svc.list_subscriptions()[0].id
    vault, _ = svc.put_vault(sub, RG, "c", "eastus", {}, {})
    svc.put_policy(sub, RG, "c", "pc", {})
    secret = f"{ctx.base_url}/keyvaults/kvc/secrets/s"
    names = [f"c{i}" for i in range(4)]
    for i, name in enumerate(names):
        server = svc.get_server(sub, RG, "east" if i % 2 else "west")
        spec = InstanceSpec(server.database_id(name), f"{vault.arm_id}/backupPolicies/pc", secret)
        svc.put_instance(sub, RG, "c", name, spec)
    now = ctx.clock.now()
    with ctx.db.session() as s:
        ids = [svc_view.instance.id for svc_view in svc.list_instances(sub, RG, "c")]
        for n in range(40):
            job = jobs.create(s, vault_id=vault.id, instance_id=None if n % 5 == 0 else ids[n % 4],
                              operation=jobs.BACKUP, params={}, now=now - timedelta(minutes=n))  # fmt: skip
            job.status = jobs.COMPLETED
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        small = svc.list_jobs(sub, RG, "c", limit=5)
        small_count = len(statements)
        statements.clear()
        page = svc.list_jobs(sub, RG, "c", limit=40)
        page_count = len(statements)
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", count)
    assert len(small) == 5
    assert len(page) == 40
    assert page_count <= small_count <= 6
    with ctx.db.session() as s:
        for row in page:
            assert row.vault.id == vault.id
            if row.job.instance_id is None:
                assert (row.instance, row.server, row.policy) == (None, None, None)
                continue
            assert row.instance is not None
            assert row.instance.id == row.job.instance_id
            single = instance_view(s, instances.by_id(s, row.job.instance_id))
            assert (row.server and row.server.id, row.policy and row.policy.id) == (
                single.server.id, single.policy.id,
            )  # fmt: skip
