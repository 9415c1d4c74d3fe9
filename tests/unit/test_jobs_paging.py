"""The REST list of jobs pages like recovery points (`$top`, `$skipToken`, `nextLink`): a
default page of `JOBS_PAGE`, newest first, each job once; `$skip` still offsets."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pgvault import jobs
from pgvault.api.dataprotection import JOBS_PAGE
from pgvault.services import Service
from tests.support.apiapp import Api

RG = "default"
JOBS = JOBS_PAGE + 7
V = "api-version=2025-07-01"


def _seed(api: Api) -> str:
    """A vault with JOBS jobs (rows written directly: nothing runs here)."""
    svc: Service = api.client.app.state.service  # type: ignore[attr-defined]
    vault, _ = svc.put_vault(api.sub, RG, "jv", "eastus", {}, {})
    now = api.ctx.clock.now()
    with api.ctx.db.session() as s:
        for i in range(JOBS):
            jobs.create(
                s, vault_id=vault.id, instance_id=None, operation=jobs.RESTORE,
                params={"restoreType": "AlternateLocation"}, now=now - timedelta(minutes=i),
            )  # fmt: skip
    return f"{vault.arm_id}/backupJobs"


def _follow(api: Api, url: str | None) -> tuple[list[int], list[str]]:
    sizes: list[int] = []
    seen: list[str] = []
    while url:
        parts = urlsplit(url)
        body = api.get(f"{parts.path}?{parts.query}").json()
        sizes.append(len(body["value"]))
        seen += [j["name"] for j in body["value"]]
        url = body["nextLink"]
    return sizes, seen


def test_jobs_page_by_default_and_with_top(api: Api) -> None:
    path = _seed(api)
    sizes, seen = _follow(api, f"{path}?{V}")
    assert sizes == [JOBS_PAGE, JOBS - JOBS_PAGE]
    assert len(set(seen)) == JOBS
    whole = api.get(path, params={"api-version": "2025-07-01", "$top": "1000"}).json()
    assert whole["nextLink"] is None
    assert [j["name"] for j in whole["value"]] == seen  # newest first, each once
    first = whole["value"][0]["properties"]
    assert first["operation"] == jobs.RESTORE
    assert first["restoreType"] == "AlternateLocation"
    assert _follow(api, f"{path}?{V}&%24top=25")[0] == [25, 25, JOBS - 50]
    skipped = _follow(api, f"{path}?{V}&%24skip=5&%24top=50")
    assert skipped == ([50, JOBS - 55], seen[5:])
    assert (
        api.get(path, params={"api-version": "2025-07-01", "$skipToken": "-1"}).status_code == 400
    )
