"""HTTP client for the CLI: finds the service, gets a token, turns error bodies into messages."""

from __future__ import annotations

import json
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pgvault.config import Settings

API_VERSION = "2025-07-01"


class ApiError(Exception):
    """An error answer from the service (or no answer at all)."""

    def __init__(
        self,
        code: str,
        message: str,
        action: str | None = None,
        details: list[dict[str, Any]] | None = None,
        status: int = 0,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.action = code, message, action
        self.details, self.status = details or [], status

    @classmethod
    def from_body(cls, status: int, body: Any) -> ApiError:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if not err:
            return cls("HttpError", f"HTTP {status}", status=status)
        info: dict[str, Any] = {}
        for extra in err.get("additionalInfo") or []:
            info = extra.get("info", {}) or {}
        actions = info.get("recommendedAction") or []
        return cls(
            err.get("code", "Error"),
            err.get("message", ""),
            actions[0] if actions else None,
            err.get("details") or [],
            status,
        )


#: The fix for an untrusted service certificate (verification is never turned off).
CA_BUNDLE_FIX = (
    "Set PGVAULT_CA_BUNDLE to a PEM file holding the certificate of the CA that signed the "
    "service's certificate (for a self-signed certificate: that certificate file)."
)


def tls_context() -> ssl.SSLContext:
    """How the CLI checks the service's certificate (always: hostname and chain).

    PGVAULT_CA_BUNDLE (a PEM file) alone if set; else the system's store (OpenSSL's default
    paths, which honour SSL_CERT_FILE and SSL_CERT_DIR); if that store holds no CA at all
    (a minimal container), httpx's default, certifi's Mozilla bundle.
    """
    bundle = os.environ.get("PGVAULT_CA_BUNDLE")
    if bundle:
        try:
            return ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:  # missing, unreadable, or no PEM certificate
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            raise ApiError(
                "InvalidCaBundle",
                f"PGVAULT_CA_BUNDLE ({bundle}) is not a readable PEM certificate file: {reason}.",
                CA_BUNDLE_FIX,
            ) from None
    ctx = ssl.create_default_context()
    if not ctx.cert_store_stats()["x509_ca"]:
        ctx = httpx.create_ssl_context()
    return ctx


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind an httpx error, if that is its cause."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _base_url() -> str:
    return os.environ.get("PGVAULT_URL", "http://127.0.0.1:8080").rstrip("/")


@dataclass
class Client:
    base_url: str
    token: str | None = None
    _subscription: str | None = None
    _lifetime: float = 600.0
    _tls: ssl.SSLContext | None = None

    @classmethod
    def from_env(cls) -> Client:
        return cls(_base_url(), os.environ.get("PGVAULT_TOKEN"))

    def _http(self) -> httpx.Client:
        if self._tls is None:
            self._tls = tls_context()
        return httpx.Client(base_url=self.base_url, timeout=60.0, verify=self._tls)

    def fetch_token(self, client_id: str | None = None, secret: str | None = None) -> str:
        """A token for the given client, or for the admin credentials under PGVAULT_HOME."""
        if client_id is None:
            path = Settings.from_env().credentials_file
            if not path.exists():
                raise ApiError(
                    "NoCredentials",
                    f"No credentials at {path}.",
                    "Start the service once (`pgvault serve`) with the same PGVAULT_HOME, "
                    "or set PGVAULT_TOKEN.",
                )
            creds = json.loads(Path(path).read_text())
            client_id, secret = creds["clientId"], creds["clientSecret"]
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret or "",
        }
        data = self._send("POST", "/oauth2/token", data=form, auth=False)
        token: str = data["access_token"]
        self._lifetime = float(data.get("expires_in", 600))
        return token

    def fetch_user_token(self, username: str, password: str) -> str:
        form = {"grant_type": "password", "username": username, "password": password}
        data = self._send("POST", "/oauth2/token", data=form, auth=False)
        token: str = data["access_token"]
        self._lifetime = float(data.get("expires_in", 600))
        return token

    def remember(self, token: str) -> None:
        """Use this signed-in token for later commands (until it expires or `pgvault logout`)."""
        self.token = token
        self._save_cache(token=token, expires=time.time() + self._lifetime, session="login")

    def forget(self) -> None:
        """Sign out: later commands use the admin credentials under PGVAULT_HOME, if readable."""
        self.token = None
        self._save_cache(token=None, expires=0, session=None)

    def _cache_path(self) -> Path:
        return Settings.from_env().home / "cli-cache.json"

    def _load(self) -> dict[str, Any]:
        """What is cached for this service URL (token, its expiry, session kind, subscription)."""
        try:
            data = json.loads(self._cache_path().read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("url") != self.base_url:
            return {}
        return data

    def _fresh_token(self, data: dict[str, Any]) -> str | None:
        token = data.get("token")
        if isinstance(token, str) and float(data.get("expires", 0)) > time.time() + 60:
            return token
        return None

    def _save_cache(self, **values: Any) -> None:
        """Keep the token between CLI runs (0600, in PGVAULT_HOME)."""
        path = self._cache_path()
        data = {**self._load(), "url": self.base_url, **values}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except OSError:
            pass

    def _session_ended(self) -> ApiError:
        return ApiError(
            "SessionEnded",
            "Your sign-in has ended (the token expired or was revoked).",
            "Sign in again with `pgvault login`, or `pgvault logout` to use the admin credentials.",
            status=401,
        )

    def _auth_header(self) -> dict[str, str]:
        """The signed-in token; else (never signed in) the admin's, from PGVAULT_HOME."""
        if self.token is None:
            data = self._load()
            self.token = self._fresh_token(data)
            if self.token is None:
                if data.get("session") == "login":
                    raise self._session_ended()  # never fall back to admin silently
                self.token = self.fetch_token()
                self._save_cache(
                    token=self.token, expires=time.time() + self._lifetime, session="admin"
                )
        return {"Authorization": f"Bearer {self.token}"}

    def _send(
        self, method: str, path: str, *, auth: bool = True, retry: bool = True, **kw: Any
    ) -> Any:
        headers = self._auth_header() if auth else {}
        params = dict(kw.get("params") or {})
        params.setdefault("api-version", API_VERSION)
        try:
            with self._http() as http:
                rest = {k: v for k, v in kw.items() if k != "params"}
                resp = http.request(method, path, headers=headers, params=params, **rest)
        except httpx.HTTPError as exc:
            bad_cert = _certificate_error(exc)
            if bad_cert is not None:
                raise ApiError(
                    "CertificateVerifyFailed",
                    f"The certificate of {self.base_url} is not trusted: "
                    f"{bad_cert.verify_message or bad_cert.reason}.",
                    CA_BUNDLE_FIX,
                ) from None
            raise ApiError(
                "ServiceUnreachable",
                f"Cannot reach pgvault at {self.base_url}: {exc}",
                "Start it with `pgvault serve`, or set PGVAULT_URL to where it runs.",
            ) from None
        if resp.status_code == 401 and auth and "PGVAULT_TOKEN" not in os.environ:
            if self._load().get("session") == "login":
                self._save_cache(token=None, expires=0)
                raise self._session_ended()
            if retry:  # an admin token cached by an earlier run of the service
                self.token = None
                self._save_cache(token=None, expires=0)
                return self._send(method, path, auth=auth, retry=False, **kw)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            raise ApiError.from_body(resp.status_code, body)
        if resp.status_code == 202:
            return {"_async": resp.headers.get("Azure-AsyncOperation")}
        if not resp.content:
            return {}
        return resp.json()

    def get(self, path: str, **params: Any) -> Any:
        """GET; a paged list (`nextLink`) is followed to its end, like the Azure SDK does."""
        data = self._send("GET", path, params=params)
        while (
            isinstance(data, dict) and data.get("nextLink") and isinstance(data.get("value"), list)
        ):
            link = httpx.URL(str(data["nextLink"]))  # on this client's own base URL
            more = self._send("GET", link.path, params=dict(link.params))
            data = {
                "value": [*data["value"], *more.get("value", [])],
                "nextLink": more.get("nextLink"),
            }
        return data

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self._send("PUT", path, json=body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self._send("PATCH", path, json=body)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._send("POST", path, json=body or {})

    def delete(self, path: str) -> Any:
        return self._send("DELETE", path)

    def operation(self, url: str) -> Any:
        """Follow an Azure-AsyncOperation URL (absolute) to its status body."""
        path = url[len(self.base_url) :] if url.startswith(self.base_url) else url
        return self._send("GET", path.split("?", 1)[0])

    def default_subscription(self) -> str:
        if self._subscription is None and os.environ.get("PGVAULT_TOKEN") is None:
            self._subscription = self._load().get("subscription")
        if self._subscription is None:
            subs = self.get("/subscriptions")["value"]
            default = [s for s in subs if s.get("isDefault")] or subs
            if not default:
                raise ApiError("SubscriptionNotFound", "The service has no subscription.")
            self._subscription = str(default[0]["subscriptionId"])
            if os.environ.get("PGVAULT_TOKEN") is None:
                self._save_cache(subscription=self._subscription)
        return self._subscription
