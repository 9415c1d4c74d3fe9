"""Database credentials read from a key-vault secret.

Azure stores the server's ADO.NET connection string in the secret
(`Server=h;Port=5432;Database=d;User Id=u;Password=p;Ssl Mode=Require`);
libpq URIs and `key=value` strings are accepted too. The password never appears
in a repr, an error message or an argv: subprocesses get it through PGPASSWORD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from pgvault.errors import UserError

_ADO_KEYS = {
    "server": "host",
    "host": "host",
    "data source": "host",
    "port": "port",
    "database": "dbname",
    "initial catalog": "dbname",
    "dbname": "dbname",
    "user id": "user",
    "userid": "user",
    "user": "user",
    "username": "user",
    "uid": "user",
    "password": "password",
    "pwd": "password",
    "ssl mode": "sslmode",
    "sslmode": "sslmode",
}
_SSL = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


@dataclass(frozen=True)
class Credentials:
    """A database login. `repr` hides the password."""

    user: str
    password: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    sslmode: str = "prefer"

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, host={self.host!r}, port={self.port!r})"


def _unsupported(detail: str) -> UserError:
    return UserError(
        f"The secret's value is not a supported connection string ({detail}). Store an ADO.NET "
        "string such as 'Server=HOST;Port=5432;Database=DB;User Id=USER;Password=PASSWORD;' "
        "or a URI 'postgresql://USER:PASSWORD@HOST:5432/DB'.",
        code="UserErrorSecretValueInUnsupportedFormat",
        recommended_action="Update the key-vault secret with a valid connection string.",
    )


def _pairs(text: str) -> dict[str, str]:
    """ADO.NET (`k=v;k=v`) or libpq (`k=v k=v`) pairs, keyed by libpq names."""
    parts = text.split(";") if ";" in text else text.split()
    out: dict[str, str] = {}
    for part in (p for p in parts if p.strip()):
        if "=" not in part:
            raise _unsupported("a part has no '='")
        k, v = part.split("=", 1)
        key = _ADO_KEYS.get(k.strip().lower())
        if key:
            out[key] = v.strip().strip("'")
    return out


def _from_uri(text: str) -> dict[str, str]:
    u = urlsplit(text)
    out: dict[str, str] = {}
    if u.username:
        out["user"] = unquote(u.username)
    if u.password is not None:
        out["password"] = unquote(u.password)
    if u.hostname:
        out["host"] = u.hostname
    try:
        if u.port:
            out["port"] = str(u.port)
    except ValueError:
        raise _unsupported("the port is not a number") from None
    if u.path.strip("/"):
        out["dbname"] = unquote(u.path.strip("/"))
    q = parse_qs(u.query)
    if "sslmode" in q:
        out["sslmode"] = q["sslmode"][0]
    return out


def parse(text: str) -> Credentials:
    """Parse a connection string; raise UserErrorSecretValueInUnsupportedFormat if unusable."""
    text = (text or "").strip()
    if not text:
        raise _unsupported("it is empty")
    values = _from_uri(text) if text.startswith(("postgresql://", "postgres://")) else _pairs(text)
    if not values.get("user"):
        raise _unsupported("no user name ('User Id=')")
    if "password" not in values:
        raise _unsupported("no password ('Password=')")
    port: int | None = None
    if values.get("port"):
        if not values["port"].isdigit() or not 0 < int(values["port"]) < 65536:
            raise _unsupported("the port is not a number between 1 and 65535")
        port = int(values["port"])
    sslmode = values.get("sslmode", "prefer").replace(" ", "-").lower()
    if sslmode not in _SSL:
        raise _unsupported(f"unknown SSL mode {values.get('sslmode')!r}")
    return Credentials(
        user=values["user"],
        password=values["password"],
        host=values.get("host"),
        port=port,
        dbname=values.get("dbname"),
        sslmode=sslmode,
    )
