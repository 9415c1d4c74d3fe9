"""The web portal in a real browser: Debian's chromium driven by Playwright, one `pgvault serve`
and one PostgreSQL server for the module.

The module fixture sets up through the CLI what the seed assumes exists (server, key vaults,
vault, policy, a protected database with one backup, a storage account); the tests then do
in the portal what the seed walks through: Backup center → vault → instance → Restore →
select point → Restore as Database (or Files) → Review + restore (failing for the vault's
missing role, fixed with Grant) → submit → the job to Completed. Every page visited is
checked with axe-core (no serious or critical violation) and kept for the "no secret in any
HTML" check. Screenshots of each wizard tab, the Backup center and the jobs pane go to
docs/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pgvault import retention
from pgvault.server import app_with_portal
from tests.e2e.conftest import (
    HOST,
    RESTORER_PASSWORD,
    SOURCE_DB,
    PgvaultServer,
    restorer_connstr,
    superuser_connstr,
)
from tests.integration.clocked import clocked_vault, tiny_database
from tests.integration.conftest import RG
from tests.support.pg import PgCluster, free_port
from tests.support.sampledb import assert_same_data, snapshot

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"
AXE = REPO / ".cache" / "axe-core" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
REGION = "eastus"
VAULT = "v1"
INSTANCE = "shop1"
JOB_TIMEOUT_MS = 180_000

PORTAL_SECRET = "Server=db;Password=set-in-the-portal-" + secrets.token_hex(8)

#: Every HTML page the tests saw, for the "no secret in any HTML" check.
SEEN: list[str] = []


@dataclass
class Portal:
    server: PgvaultServer
    source: PgCluster
    admin_id: str
    admin_secret: str
    reader_password: str
    files_dir: Path
    secrets: list[str]


@pytest.fixture(scope="module")
def portal(pgvault_module_server: PgvaultServer, source_pg: PgCluster) -> Portal:
    srv = pgvault_module_server
    srv.cli("server", "add", "--name", "src", "--host", HOST, "--port", str(source_pg.port),
            "--region", REGION)  # fmt: skip
    srv.cli("keyvault", "create", "--name", "kv1", "--region", REGION)
    srv.cli("keyvault", "create", "--name", "kv2", "--region", REGION)
    src_secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "srcpw",
        input=superuser_connstr(source_pg),
    )["properties"]["secretUri"]  # fmt: skip
    # The restore credentials live in a key vault the vault's identity cannot read yet.
    srv.cli("keyvault", "secret", "set", "--vault-name", "kv2", "--name", "restorer",
            input=restorer_connstr(source_pg))  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    srv.cli("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    server_id = srv.cli_json("server", "show", "--name", "src")["id"]
    kv1_id = next(
        kv["id"] for kv in srv.cli_json("keyvault", "list")["value"] if kv["name"] == "kv1"
    )
    srv.grant(f"vault:{VAULT}", "Reader", server_id)
    srv.grant(f"vault:{VAULT}", "Key Vault Secrets User", kv1_id)
    srv.cli("instance", "create", "--vault-name", VAULT, "--server", "src", "--database",
            SOURCE_DB, "--policy", "weekly", "--secret", src_secret, "--name", INSTANCE)  # fmt: skip
    job = srv.cli_json("backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    files_dir = srv.home.parent / "storage-sa1"
    files_dir.mkdir()
    srv.cli("storage-account", "create", "--name", "sa1", "--region", REGION, "--kind", "local",
            "--path", str(files_dir))  # fmt: skip
    srv.cli("storage-account", "container", "create", "--account-name", "sa1", "--name", "dumps")
    reader = srv.cli_json("principal", "create", "--name", "rita", "--type", "user")
    srv.grant("rita", "Backup Reader", vault["id"])
    creds = srv.admin_credentials()
    known = [creds["clientSecret"], source_pg.superuser_password, RESTORER_PASSWORD,
             reader["secret"], PORTAL_SECRET]  # fmt: skip
    return Portal(srv, source_pg, creds["clientId"], creds["clientSecret"], reader["secret"],
                  files_dir, known)  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run scripts/bootstrap"
    assert AXE.exists(), "axe-core is missing under .cache/axe-core: run scripts/bootstrap"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


def _page(browser: Browser, width: int = 1280) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def sign_in(page: Page, url: str, name: str, secret: str, *, user: bool = False) -> None:
    """Open the portal (sent to sign in first), sign in, land on the Backup center."""
    page.goto(url + "/")
    assert "/signin" in page.url  # a page needs a session: sent to sign in, then back
    kind = "User (name and password)" if user else "Service principal (client id and secret)"
    page.get_by_label(kind).check()
    page.get_by_label("User name or client id").fill(name)
    page.get_by_label("Password or client secret").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Backup center")).to_be_visible()


def sign_in_admin(page: Page, portal: Portal) -> None:
    sign_in(page, portal.server.url, portal.admin_id, portal.admin_secret)


def check_page(page: Page, shot: str | None = None) -> None:
    """axe-core finds no serious or critical violation; the HTML is kept; a screenshot."""
    SEEN.append(page.content())
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    bad = [
        (v["id"], v["impact"], [n["html"][:120] for n in v["nodes"][:3]])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{page.url}: {json.dumps(bad, indent=1)}"
    if shot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)


def open_instance(page: Page, portal: Portal) -> None:
    """Backup center → vault → Backup Instances → the instance (as the seed starts)."""
    page.goto(portal.server.url + "/")
    page.get_by_role("link", name=VAULT, exact=True).first.click()
    expect(page.get_by_role("heading", name=re.compile(f"^{VAULT}"))).to_be_visible()
    check_page(page)
    page.get_by_role("link", name=INSTANCE, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(f"^{INSTANCE}"))).to_be_visible()
    check_page(page)


def wait_completed(page: Page) -> None:
    """The job page updates itself (htmx) until the job is Completed."""
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text(re.compile("Completed|Failed"), timeout=JOB_TIMEOUT_MS)
    expect(status).to_have_text("Completed")


def review_then_grant(page: Page, code: str, role: str, shot: str | None = None) -> None:
    """Review fails for the vault's missing role; Grant fixes it; validation then passes."""
    validation = page.get_by_test_id("validation")
    expect(validation).to_contain_text(code)
    expect(validation).to_contain_text("pgvault role assignment create")
    expect(page.get_by_role("button", name="Restore", exact=True)).to_be_disabled()
    if shot:
        check_page(page, shot)
    page.get_by_role("button", name=f"Grant {role}").click()
    expect(page.get_by_test_id("validation")).to_have_text("Validation passed.")
    expect(page.get_by_role("button", name="Restore", exact=True)).to_be_enabled()


def test_seed_flow_restore_as_database(portal: Portal, browser: Browser) -> None:
    page = _page(browser)
    sign_in_admin(page, portal)
    check_page(page, "backup-center")
    open_instance(page, portal)

    page.get_by_role("link", name="Restore", exact=True).click()
    expect(page.get_by_role("heading", name="Basics")).to_be_visible()
    check_page(page, "wizard-1-basics")
    page.get_by_role("button", name="Next: Select restore point").click()

    expect(page.get_by_role("heading", name="Select restore point")).to_be_visible()
    radios = page.locator("input[name=point]")
    expect(radios.first).to_be_checked()  # the latest is preselected
    expect(page.locator("#rehydration")).to_be_hidden()  # a vault-tier point needs none
    check_page(page, "wizard-2-select-restore-point")
    page.get_by_role("button", name="Next: Restore parameters").click()

    expect(page.get_by_role("heading", name="Restore parameters")).to_be_visible()
    page.get_by_label("Restore as Database").check()
    src = page.locator("#server option", has_text=re.compile(r"^src ")).get_attribute("value")
    assert src
    page.get_by_label(re.compile("^Target server")).select_option(src)
    page.get_by_label("Restore database name").fill("shop_portal")
    page.get_by_label(re.compile("^Select key vault and secret")).select_option(
        label="kv2 / restorer"
    )
    expect(page.get_by_role("note")).to_contain_text(
        "all the privileges over the restored database"
    )
    check_page(page, "wizard-3-restore-parameters")
    page.get_by_role("button", name="Review + restore").click()

    expect(page.get_by_role("heading", name="Review + restore")).to_be_visible()
    review_then_grant(
        page,
        "UserErrorMissingPermissionsOnSecretStore",
        "Key Vault Secrets User",
        "wizard-4-review-failed",
    )
    check_page(page, "wizard-4-review-passed")
    page.get_by_role("button", name="Restore", exact=True).click()

    page.get_by_test_id("job-link").click()
    wait_completed(page)
    check_page(page, "restore-job")
    page.goto(portal.server.url + "/jobs")
    check_page(page, "backup-jobs")

    assert_same_data(
        snapshot(portal.source.admin_dsn(SOURCE_DB)),
        snapshot(portal.source.admin_dsn("shop_portal")),
    )


def test_restore_as_files(portal: Portal, browser: Browser) -> None:
    page = _page(browser)
    sign_in_admin(page, portal)
    open_instance(page, portal)
    page.get_by_role("link", name="Restore", exact=True).click()
    page.get_by_role("button", name="Next: Select restore point").click()
    page.get_by_role("button", name="Next: Restore parameters").click()
    page.get_by_label("Restore as Files").check()
    page.get_by_label(re.compile("^Storage account")).select_option(label="sa1")
    # htmx swaps in the containers of the chosen account
    page.get_by_label("Target Container").select_option("dumps")
    page.get_by_label("File prefix").fill("portal/shop")
    page.get_by_role("button", name="Review + restore").click()
    review_then_grant(page, "UserErrorContainerNotAccessible", "Storage Blob Data Contributor")
    page.get_by_role("button", name="Restore", exact=True).click()
    page.get_by_test_id("job-link").click()
    wait_completed(page)
    written = portal.files_dir / "dumps" / "portal"
    assert sorted(f.name for f in written.iterdir()) == ["shop", "shop.manifest.json"]
    assert (written / "shop" / "toc.dat").stat().st_size > 0  # a pg_restore -Fd archive


def test_narrow_screen_and_keyboard(portal: Portal, browser: Browser) -> None:
    """At 390 px the instance page still shows its actions; Tab reaches the skip link first."""
    page = _page(browser, width=390)
    sign_in_admin(page, portal)
    open_instance(page, portal)
    expect(page.get_by_role("link", name="Restore", exact=True)).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_backup_reader_cannot_restore(portal: Portal, browser: Browser) -> None:
    page = _page(browser)
    sign_in(page, portal.server.url, "rita", portal.reader_password, user=True)
    open_instance(page, portal)
    # the reader sees the instance, but Restore and Backup now are disabled with the reason
    expect(page.get_by_role("link", name="Restore", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Backup now")).to_be_disabled()
    expect(page.locator(".why").first).to_contain_text("restore/action")
    # and a hand-made POST with a valid form token is refused by the server
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    url = page.url + "/restore"
    resp = page.request.post(url, form={"csrf": csrf, "point": "x"})
    assert resp.status == 403
    assert "AuthorizationFailed" in resp.text()
    SEEN.append(resp.text())


def test_post_without_csrf_token_is_refused(portal: Portal, browser: Browser) -> None:
    page = _page(browser)
    sign_in_admin(page, portal)
    open_instance(page, portal)
    before = len(portal.server.cli_json("job", "list", "--vault-name", VAULT)["value"])
    resp = page.request.post(page.url + "/backup", form={"tag": "Default"})
    assert resp.status == 403
    assert "CsrfTokenInvalid" in resp.text()
    resp = page.request.post(page.url + "/backup", form={"tag": "Default", "csrf": "0" * 64})
    assert resp.status == 403
    after = len(portal.server.cli_json("job", "list", "--vault-name", VAULT)["value"])
    assert after == before  # nothing was queued


def test_other_pages_and_sign_out(portal: Portal, browser: Browser) -> None:
    page = _page(browser)
    sign_in_admin(page, portal)
    for path in ("/vaults", "/resources", "/iam?scope=/", "/audit", "/jobs?operation=Restore"):
        page.goto(portal.server.url + path)
        check_page(page)
    # a new vault from the vaults page, with its properties
    page.goto(portal.server.url + "/vaults")
    page.get_by_label("Vault name").fill("v2")
    page.get_by_label("Backup storage redundancy").select_option("GeoRedundant")
    page.get_by_role("button", name="Create vault").click()
    expect(page.get_by_role("heading", name=re.compile("^v2"))).to_be_visible()
    expect(page.locator("dl.props")).to_contain_text("GeoRedundant")
    expect(page.get_by_test_id("crr-state")).to_have_text("Disabled")
    check_page(page)
    # Cross Region Restore: irreversible, so confirmed first
    expect(page.locator("#crr-words")).to_contain_text("cannot be disabled")
    page.get_by_role("checkbox", name="I understand that this cannot be undone").check()
    page.get_by_role("button", name="Enable Cross Region Restore").click()
    expect(page.get_by_test_id("crr-state")).to_have_text("Enabled")
    expect(page.get_by_role("button", name="Enable Cross Region Restore")).to_have_count(0)
    # a secret's value is write-only: set from the page, never shown again
    page.goto(portal.server.url + "/resources")
    page.get_by_label("Secret name in kv1").fill("portal-set")
    page.get_by_label("Value (write-only)").first.fill(PORTAL_SECRET)
    page.get_by_role("button", name="Set secret").first.click()
    expect(page.get_by_role("table", name=re.compile("^Key vaults"))).to_contain_text("portal-set")
    check_page(page)
    listed = portal.server.cli_json("keyvault", "secret", "list", "--vault-name", "kv1")
    assert "portal-set" in [x["name"] for x in listed["value"]]
    # Access control (IAM) on the vault: add a role assignment, see it, remove it
    vault_id = portal.server.cli_json("vault", "show", "--name", VAULT)["id"]
    page.goto(f"{portal.server.url}/iam?scope={quote(vault_id, safe='')}")
    table = page.get_by_role("table", name="At this scope and inherited from above")
    expect(table).to_contain_text("Backup Reader")  # rita's, set up by the fixture
    expect(table).to_contain_text("Inherited (/)")  # the admin's Owner at the root
    page.get_by_label("Role", exact=True).select_option("Reader")
    page.get_by_label(re.compile("^Member")).select_option("rita")
    page.get_by_role("button", name="Add").click()
    remove = page.get_by_role("button", name="Remove Reader from rita")
    expect(remove).to_have_count(1)
    check_page(page, "access-control")
    remove.click()
    expect(page.get_by_role("button", name="Remove Reader from rita")).to_have_count(0)
    page.goto(portal.server.url + "/audit")
    expect(page.get_by_role("table")).to_contain_text("roleAssignments/delete")
    # an error is a page with its code and what to do
    page.goto(portal.server.url + "/vaults/nosub/norg/novault")
    expect(page.get_by_role("heading", name="Something needs fixing")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("ResourceNotFound")
    expect(page.get_by_role("alert")).to_contain_text("Fix:")
    check_page(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to pgvault")).to_be_visible()
    check_page(page)
    page.goto(portal.server.url + "/vaults")
    assert "/signin" in page.url


# -- an archived point: rehydration in the wizard ------------------------------------------------
# A point reaches the archive tier only after its vault retention has passed, so this test runs
# the portal in-process (uvicorn in a thread) on a pgvault whose clock is simulated: the point is
# backed up, the clock moves eight days on, the housekeeping sweep archives it. Everything else
# (PostgreSQL, pg_dump/pg_restore, the datastores, the browser) is real.

ARCHIVE_POLICY = retention.build_policy(
    keep_default="P1W", archive_after="on-expiry", archive_keep="P6M"
)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://{HOST}:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_archived_point_asks_for_rehydration(
    tmp_path: Path, source_pg: PgCluster, browser: Browser
) -> None:
    with clocked_vault(tmp_path, ARCHIVE_POLICY) as (cv, _datastore, _archive):
        db = tiny_database(source_pg, "arch")
        instance = cv.protect(source_pg, db)
        point_id = cv.backup(instance).recovery_point_id
        cv.helper.secret("restorer", restorer_connstr(source_pg))
        cv.advance(timedelta(days=8))
        assert cv.sweep()["tiered"] == 1
        creds = json.loads(cv.ctx.settings.credentials_file.read_text())
        with serving(app_with_portal(cv.ctx, start_workers=False)) as url:
            page = _page(browser)
            sign_in(page, url, creds["clientId"], creds["clientSecret"])
            base = f"{url}/vaults/{cv.sub}/{RG}/{cv.name}/instances/{instance}"
            page.goto(base + "/restore?tab=point")
            radio = page.locator(f"#rp-{point_id}")
            expect(radio).to_be_checked()
            expect(page.get_by_role("row", name=re.compile("Archive"))).to_be_visible()
            expect(page.locator("#rehydration")).to_be_visible()
            expect(page.get_by_label("Rehydration priority")).to_have_value("Standard")
            days = page.get_by_label(re.compile("^Rehydration duration"))
            expect(days).to_have_value("15")
            days.fill("9")  # the page refuses it ...
            assert page.evaluate("document.getElementById('days').validity.valid") is False
            check_page(page, "wizard-2-archived-point-rehydration")
            # ... and so does the server, when the form is sent anyway
            page.goto(base + f"/restore?tab=params&point={point_id}&priority=Standard&days=9")
            expect(page.get_by_role("alert")).to_contain_text("UserErrorInvalidRehydrationDuration")
            expect(page.get_by_role("heading", name="Select restore point")).to_be_visible()
            page.get_by_label(re.compile("^Rehydration duration")).fill("12")
            page.get_by_label("Rehydration priority").select_option("High")
            page.get_by_role("button", name="Next: Restore parameters").click()
            src = page.locator("#server option", has_text=re.compile(r"^src ")).get_attribute(
                "value"
            )
            assert src
            page.get_by_label(re.compile("^Target server")).select_option(src)
            page.get_by_label("Restore database name").fill("arch_restored")
            page.get_by_label(re.compile("^Select key vault and secret")).select_option(
                label="kv1 / restorer"
            )
            page.get_by_role("button", name="Review + restore").click()
            expect(page.get_by_test_id("validation")).to_have_text("Validation passed.")
            expect(page.locator("dl.props")).to_contain_text("High priority, kept 12 days")
            page.get_by_role("button", name="Restore", exact=True).click()
            page.get_by_test_id("job-link").click()
            wait_completed(page)
            expect(page.get_by_role("table", name="Sub-tasks")).to_contain_text("Rehydrating")
        point = cv.point(point_id or "")
        assert point.rehydrated_until == cv.now() + timedelta(days=12)
        assert_same_data(
            snapshot(source_pg.admin_dsn(db)), snapshot(source_pg.admin_dsn("arch_restored"))
        )


def test_policy_protection_backup_now_and_lifecycle(portal: Portal, browser: Browser) -> None:
    """Create a policy (previewed in words), Configure protection (validate, Grant, configure),
    Backup now with a retention tag, suspend, delete (confirmed), undelete."""
    srv, pg = portal.server, portal.source
    pg.create_database("shop2")
    pg.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)", dbname="shop2")
    srv.cli("keyvault", "create", "--name", "kv3", "--region", REGION)
    srv.cli("keyvault", "secret", "set", "--vault-name", "kv3", "--name", "shop2",
            input=superuser_connstr(pg, "shop2"))  # fmt: skip
    page = _page(browser)
    sign_in_admin(page, portal)
    open_instance(page, portal)
    page.get_by_role("link", name=VAULT, exact=True).first.click()

    page.get_by_role("link", name="Backup policies").click()
    page.get_by_label("Name").fill("monthly")
    page.get_by_label("Schedule", exact=True).select_option("daily")
    page.get_by_label("Keep the first backup of each month for (optional)").fill("P1Y")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("policy-preview")).to_contain_text("keep")
    check_page(page, "backup-policies")
    page.get_by_role("button", name="Create policy").click()
    expect(page.get_by_role("table")).to_contain_text("monthly")

    page.goto(page.url.rsplit("/", 1)[0] + "/protect")
    server = page.locator("#server option", has_text=re.compile(r"^src ")).get_attribute("value")
    assert server
    page.get_by_label(re.compile("^Server")).select_option(server)
    page.get_by_label("Database").fill("shop2")
    page.get_by_label("Backup policy").select_option("monthly")
    page.get_by_label(re.compile("^Key vault secret")).select_option(label="kv3 / shop2")
    page.get_by_label(re.compile("^Backup instance name")).fill("shop2")
    page.get_by_role("button", name="Validate").click()
    expect(page.get_by_test_id("validation")).to_contain_text(
        "UserErrorMissingPermissionsOnSecretStore"
    )
    expect(page.get_by_role("button", name="Configure backup")).to_be_disabled()
    check_page(page, "configure-protection")
    page.get_by_role("button", name="Grant Key Vault Secrets User").click()
    expect(page.get_by_test_id("validation")).to_have_text("Validation passed.")
    page.get_by_role("button", name="Configure backup").click()
    expect(page.get_by_role("heading", name=re.compile("^shop2"))).to_be_visible()

    page.get_by_label("Retention tag").select_option("Monthly")
    page.get_by_role("button", name="Backup now").click()
    wait_completed(page)
    page.get_by_role("link", name="shop2", exact=True).click()
    expect(page.get_by_role("table", name="Recovery points, newest first")).to_contain_text(
        "Monthly"
    )

    page.get_by_label("Protection", exact=True).select_option("suspendBackups")
    page.get_by_role("button", name="Apply").click()  # not confirmed: refused, nothing changed
    expect(page.get_by_role("alert")).to_contain_text("needs confirmation")
    page.go_back()
    expect(page.locator("dl.props")).to_contain_text("ProtectionConfigured")
    expect(page.locator("#stop-words")).to_contain_text("Retain as per policy")
    page.get_by_label("Protection", exact=True).select_option("suspendBackups")
    page.get_by_role("checkbox", name=re.compile("stop backup of shop2")).check()
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("dl.props")).to_contain_text("BackupSchedulesSuspended")
    delete = page.get_by_role("button", name="Delete")
    page.get_by_role("checkbox", name=re.compile("delete backup instance shop2")).check()
    delete.click()
    expect(page.get_by_role("heading", name=re.compile(f"^{VAULT}"))).to_be_visible()
    expect(page.get_by_role("table", name=re.compile("^Kept until purged"))).to_contain_text(
        "shop2"
    )
    check_page(page)
    page.get_by_role("button", name="Undelete").click()
    expect(page.get_by_role("heading", name=re.compile("^shop2"))).to_be_visible()
    expect(page.locator("dl.props")).to_contain_text("ProtectionStopped")


def test_cross_region_restore(portal: Portal, browser: Browser) -> None:
    """A GeoRedundant vault with Cross Region Restore: its instance in the Backup center's
    Secondary Region filter (lag, primary datastore), its points in westus, Restore to
    secondary region (only westus targets; validateCrossRegionRestore on Review), the job in
    the secondary-region jobs."""
    srv, pg = portal.server, portal.source
    pg.create_database("geodb")
    pg.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)", dbname="geodb")
    geo_secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "geodb",
        input=superuser_connstr(pg, "geodb"),
    )["properties"]["secretUri"]  # fmt: skip
    srv.cli("server", "add", "--name", "west", "--host", HOST, "--port", str(pg.port),
            "--region", "westus")  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", "geo", "--region", REGION,
                         "--storage-redundancy", "GeoRedundant", "--cross-region-restore")  # fmt: skip
    srv.cli("policy", "create", "--vault-name", "geo", "--name", "weekly")
    for name in ("src", "west"):
        srv.grant("vault:geo", "Reader", srv.cli_json("server", "show", "--name", name)["id"])
    kv1_id = next(
        kv["id"] for kv in srv.cli_json("keyvault", "list")["value"] if kv["name"] == "kv1"
    )
    srv.grant("vault:geo", "Key Vault Secrets User", kv1_id)
    srv.cli("instance", "create", "--vault-name", "geo", "--server", "src", "--database",
            "geodb", "--policy", "weekly", "--secret", geo_secret, "--name", "geo1")  # fmt: skip
    job = srv.cli_json("backup", "now", "--vault-name", "geo", "--instance", "geo1", "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]

    page = _page(browser)
    sign_in_admin(page, portal)
    page.goto(portal.server.url + "/?region=Secondary")
    table = page.get_by_role("table", name=re.compile("as their secondary region holds them"))
    row = table.get_by_role("row", name=re.compile("geo1"))
    for _ in range(60):  # replication follows the backup (near-immediate by default)
        if "1 (0 pending)" in (row.text_content() or ""):
            break
        time.sleep(0.5)
        page.reload()
    expect(row).to_contain_text("westus")
    expect(row).to_contain_text("1 (0 pending)")
    expect(row).to_contain_text("Available")
    check_page(page, "backup-center-secondary-region")
    row.get_by_role("link", name="geo1").click()
    expect(page.get_by_test_id("primary-status")).to_have_text("Available")
    points = page.get_by_role("table", name=re.compile("^Recovery points replicated to westus"))
    expect(points.locator("tbody tr")).to_have_count(1)
    check_page(page, "secondary-region-instance")
    page.get_by_role("link", name="Restore to secondary region").click()
    expect(page.get_by_test_id("restore-region")).to_contain_text("westus")
    page.get_by_role("button", name="Next: Select restore point").click()
    expect(page.locator("input[name=point]").first).to_be_checked()
    page.get_by_role("button", name="Next: Restore parameters").click()
    page.get_by_label("Restore as Database").check()
    servers = page.locator("#server option").all_text_contents()
    assert any(t.startswith("west ") for t in servers), servers
    assert not any(t.startswith("src ") for t in servers), servers  # eastus is not a target
    west = page.locator("#server option", has_text=re.compile(r"^west ")).get_attribute("value")
    assert west
    page.get_by_label(re.compile("^Target server")).select_option(west)
    page.get_by_label("Restore database name").fill("shop_west")
    page.get_by_label(re.compile("^Select key vault and secret")).select_option(
        label="kv2 / restorer"
    )
    page.get_by_role("button", name="Review + restore").click()
    review_then_grant(page, "UserErrorMissingPermissionsOnSecretStore", "Key Vault Secrets User")
    check_page(page, "wizard-4-review-secondary-region")
    page.get_by_role("button", name="Restore", exact=True).click()
    page.get_by_test_id("job-link").click()
    wait_completed(page)
    sub, rg = vault["id"].split("/")[2], vault["id"].split("/")[4]
    page.goto(f"{portal.server.url}/secondary/westus/{sub}/{rg}/geo/instances/geo1")
    expect(
        page.get_by_role("table", name=re.compile("^Cross-region restore jobs"))
    ).to_contain_text("Completed")
    assert_same_data(
        snapshot(portal.source.admin_dsn("geodb")),
        snapshot(portal.source.admin_dsn("shop_west")),
    )
    # the primary datastore lost: shown Unavailable, and the secondary's pages still answer
    primary = srv.home / "datastore"
    moved = primary.with_name("datastore-away")
    primary.rename(moved)
    try:
        page.goto(portal.server.url + "/?region=Secondary")
        expect(row).to_contain_text("Unavailable")
        row.get_by_role("link", name="geo1").click()
        expect(page.get_by_test_id("primary-status")).to_have_text("Unavailable")
        expect(points.locator("tbody tr")).to_have_count(1)
        expect(page.get_by_role("link", name="Restore to secondary region")).to_be_visible()
    finally:
        moved.rename(primary)


def test_every_point_is_reachable_in_the_wizard(portal: Portal, browser: Browser) -> None:
    """Select restore point pages (one point a page here): the latest is preselected, an
    older point is chosen from the next page and carried to Review."""
    job = portal.server.cli_json(
        "backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait"
    )
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    page = _page(browser)
    sign_in_admin(page, portal)
    open_instance(page, portal)
    page.goto(page.url + "/restore?tab=point&top=1")
    radios = page.locator("input[name=point]")
    expect(radios).to_have_count(1)
    expect(radios.first).to_be_checked()  # the latest
    latest = radios.first.get_attribute("value")
    page.get_by_role("link", name="Older points").click()
    expect(radios).to_have_count(1)
    expect(radios.first).not_to_be_checked()  # the latest stays chosen, on another page
    expect(page.get_by_text(re.compile("^Selected: .*on another page"))).to_be_visible()
    older = radios.first.get_attribute("value")
    assert older
    assert older != latest
    check_page(page)
    radios.first.check()
    page.get_by_role("button", name="Next: Restore parameters").click()
    expect(page.get_by_role("heading", name="Restore parameters")).to_be_visible()
    assert f"point={older}" in page.url


def test_register_resources_without_javascript(portal: Portal, browser: Browser) -> None:
    """Servers, key vaults, storage accounts and containers from the Resources page, with the
    API's validation; the wizard's Target Container list re-renders server-side without JS."""
    srv = portal.server
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(srv.url + "/signin")
    page.get_by_label("Service principal (client id and secret)").check()
    page.get_by_label("User name or client id").fill(portal.admin_id)
    page.get_by_label("Password or client secret").fill(portal.admin_secret)
    page.get_by_role("button", name="Sign in").click()
    page.goto(srv.url + "/resources")
    page.get_by_text("Register a server").click()
    page.get_by_label("Server name").fill("portalsrv")
    page.get_by_label("Host").fill(HOST)
    page.get_by_label("Port").fill(str(portal.source.port))
    page.get_by_label("Server region").fill("westeurope")
    page.get_by_role("button", name="Register server").click()
    expect(page.get_by_role("table", name="Registered servers")).to_contain_text("portalsrv")
    page.get_by_text("Create a key vault").click()
    page.get_by_label("Key vault name").fill("kvportal")
    page.get_by_role("button", name="Create key vault").click()
    expect(page.get_by_role("table", name=re.compile("^Key vaults"))).to_contain_text("kvportal")
    # a directory outside the local storage roots is refused, as by the API and the CLI
    page.get_by_text("Create a storage account").click()
    page.get_by_label("Storage account name").fill("saout")
    page.get_by_label(re.compile("^Directory")).fill("/etc")
    page.get_by_role("button", name="Create storage account").click()
    expect(page.get_by_role("heading", name="Something needs fixing")).to_be_visible()
    SEEN.append(page.content())
    target = srv.home.parent / "storage-sa2"
    target.mkdir()
    page.goto(srv.url + "/resources")
    page.get_by_text("Create a storage account").click()
    page.get_by_label("Storage account name").fill("sa2")
    page.get_by_label(re.compile("^Directory")).fill(str(target))
    page.get_by_role("button", name="Create storage account").click()
    page.get_by_label("Container name in sa2").fill("portalfiles")
    page.get_by_role("button", name="Create container").last.click()
    accounts = page.get_by_role("table", name="Storage accounts and their containers")
    expect(accounts.get_by_role("row", name=re.compile("^sa2"))).to_contain_text("portalfiles")
    SEEN.append(page.content())  # axe needs JavaScript: test_other_pages checks this page
    assert srv.cli_json("server", "show", "--name", "portalsrv")["location"] == "westeurope"
    # Restore as Files: choosing the account and "Show the containers" re-renders the tab
    page.goto(srv.url + "/vaults")
    page.get_by_role("link", name=VAULT, exact=True).first.click()
    page.get_by_role("link", name=INSTANCE, exact=True).click()
    page.get_by_role("link", name="Restore", exact=True).click()
    page.get_by_role("button", name="Next: Select restore point").click()
    page.get_by_role("button", name="Next: Restore parameters").click()
    expect(page.get_by_label("Target Container").locator("option")).to_have_count(1)
    page.get_by_label("Restore as Files").check()
    page.get_by_label(re.compile("^Storage account")).select_option(label="sa2")
    page.get_by_role("button", name="Show the containers of this account").click()
    expect(page.get_by_role("heading", name="Restore parameters")).to_be_visible()
    options = page.get_by_label("Target Container").locator("option")
    expect(options).to_have_text(["Select a container", "portalfiles"])
    expect(page.get_by_label("Restore as Files")).to_be_checked()
    context.close()


def test_no_secret_in_any_html(portal: Portal) -> None:
    assert len(SEEN) > 10
    for html in SEEN:
        for secret in portal.secrets:
            assert secret not in html


def test_failed_sign_in_is_audited_and_a_finished_job_cannot_be_cancelled(
    portal: Portal, browser: Browser
) -> None:
    page = _page(browser)
    page.goto(portal.server.url + "/signin")
    page.get_by_label("User name or client id").fill("rita")
    page.get_by_label("Password or client secret").fill("not-" + "her-password")
    page.get_by_label("User (name and password)").check()
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    sign_in_admin(page, portal)
    page.goto(portal.server.url + "/audit")
    expect(page.get_by_role("table")).to_contain_text("401")
    # the backup of the fixture is Completed: its page offers no Cancel, and a POST is refused
    listed = portal.server.cli_json("job", "list", "--vault-name", VAULT)["value"]
    job_id = next(j["name"] for j in listed if j["properties"]["status"] == "Completed")
    vault = portal.server.cli_json("vault", "show", "--name", VAULT)["id"]
    sub, rg = vault.split("/")[2], vault.split("/")[4]
    url = f"{portal.server.url}/vaults/{sub}/{rg}/{VAULT}/jobs/{job_id}"
    page.goto(url)
    expect(page.get_by_test_id("job-status")).to_have_text(re.compile("Completed|Failed"))
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    resp = page.request.post(url + "/cancel", form={"csrf": csrf})
    assert resp.status == 409
    assert "JobAlreadyFinished" in resp.text()
