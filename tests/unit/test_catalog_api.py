"""`POST /pgvault/catalog/rebuild`: an Owner's operation at `/` (it writes every vault's points)."""

from __future__ import annotations

import uuid

from tests.support.apiapp import Api


def test_rebuild_is_for_owners_and_answers_what_it_did(api: Api) -> None:
    r = api.call("POST", "/pgvault/catalog/rebuild")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "manifestsFound": 0,
        "pointsAdded": 0,
        "pointsAlreadyPresent": 0,
        "incomplete": [],
        "unmatched": [],
    }
    props = api.principal(f"reader-{uuid.uuid4().hex[:8]}")
    api.assign(f"/subscriptions/{api.sub}", "Backup Contributor", str(props["principalId"]))
    denied = api.call("POST", "/pgvault/catalog/rebuild", headers=api.sign_in(props))
    assert denied.status_code == 403
    assert "pgvault/catalog/action" in denied.text
