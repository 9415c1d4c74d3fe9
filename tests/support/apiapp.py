"""The API in-process for unit tests: one app on a temp home, its admin's token, a client.

No workers run and the datastore is in memory, so nothing here reaches PostgreSQL or object
storage; tests that need those use the integration and e2e suites.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from pgvault.api.app import create_app
from pgvault.clock import Clock
from pgvault.config import Settings
from pgvault.context import Context

AUTHZ = "/providers/Microsoft.Authorization"


@contextlib.contextmanager
def in_process(home: Path, clock: Clock | None = None) -> Iterator[tuple[Context, TestClient]]:
    """A started app on `home` (start-up ran: admin, credentials file) and a client of it.

    Server errors come back as 500 answers, as a real client sees them; the app is `client.app`.
    Local storage accounts may live beside or under the home (the operator's storage root).
    """
    settings = Settings(
        home=home,
        datastore_url="memory://",
        local_storage_roots=(home.parent,),
        storage_endpoint_allow=("127.0.0.0/8", "::1"),
    )
    ctx = Context.create(settings, clock=clock)
    with TestClient(create_app(ctx, start_workers=False), raise_server_exceptions=False) as client:
        yield ctx, client
    ctx.db.dispose()


def admin_creds(ctx: Context) -> dict[str, str]:
    """The admin's client id and secret, from the credentials file start-up wrote."""
    creds: dict[str, str] = json.loads(ctx.settings.credentials_file.read_text())
    return creds


def client_form(client_id: str, secret: str, /, **change: str) -> dict[str, str]:
    """A client-credentials token request (fields in `change` replace or add)."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return {**form, **change}


def admin_form(ctx: Context, **change: str) -> dict[str, str]:
    """The admin's client-credentials token request."""
    creds = admin_creds(ctx)
    return client_form(creds["clientId"], creds["clientSecret"], **change)


def bearer(client: TestClient, form: dict[str, str]) -> dict[str, str]:
    """Headers carrying a token for `form` (which must be granted one)."""
    r = client.post("/oauth2/token", data=form)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@dataclass(repr=False)
class Api:
    """The app, its context and the admin's headers; calls go as the admin unless told."""

    client: TestClient
    ctx: Context
    admin: dict[str, str]
    admin_creds: dict[str, str]
    sub: str

    def __repr__(self) -> str:
        return f"Api(sub={self.sub!r})"

    @classmethod
    def signed_in(cls, ctx: Context, client: TestClient) -> Api:
        """The admin signed in to an `in_process` app; `sub` is the default subscription."""
        admin = bearer(client, admin_form(ctx))
        subs = client.get("/subscriptions", headers=admin).json()["value"]
        return cls(client, ctx, admin, admin_creds(ctx), subs[0]["subscriptionId"])

    @property
    def clock(self) -> Any:
        """The app's clock (a `FrozenClock` where the module gave one)."""
        return self.ctx.clock

    def rg(self, name: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{name}"

    def call(self, method: str, path: str, body: Any = None, headers: Any = None, **kw: Any) -> Any:
        return self.client.request(
            method, path, headers=self.admin if headers is None else headers, json=body, **kw
        )

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.admin, **kw)

    def put(self, path: str, body: Any = None) -> Any:
        return self.client.put(path, headers=self.admin, json=body)

    def ok(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        r = self.call(method, path, body)
        assert r.status_code == expect if expect else r.status_code in (200, 201, 202), r.text
        return r.json() if r.content else None

    def token(self, **form: str) -> Any:
        return self.client.post("/oauth2/token", data=form)

    def principal(self, name: str, kind: str = "service-principal") -> dict[str, Any]:
        """Create a principal; its properties (principalId, clientId, secret)."""
        body = self.ok(
            "PUT", f"/pgvault/principals/{name}", {"properties": {"principalType": kind}}
        )
        return dict(body["properties"])

    def sign_in(self, props: dict[str, Any], name: str | None = None) -> dict[str, str]:
        """Headers for a principal: a service principal's client credentials, or a user's."""
        if name is None:
            return bearer(self.client, client_form(props["clientId"], props["secret"]))
        form = {"grant_type": "password", "username": name, "password": props["secret"]}
        return bearer(self.client, form)

    def assign(self, scope: str, role: str, principal_id: str, expect: int = 201) -> Any:
        body = {"properties": {"roleDefinitionId": role, "principalId": principal_id}}
        return self.ok("PUT", f"{scope}{AUTHZ}/roleAssignments/{uuid.uuid4()}", body, expect)

    def audit(self, filter_: str | None = None) -> list[dict[str, Any]]:
        params = {"$filter": filter_} if filter_ else {}
        path = (
            f"/subscriptions/{self.sub}/providers/Microsoft.Insights/eventtypes/management/values"
        )
        r = self.call("GET", path, params=params)
        assert r.status_code == 200, r.text
        return list(r.json()["value"])
