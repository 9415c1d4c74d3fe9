"""Database credentials read from a key-vault secret.

Azure stores the server's ADO.NET connection string in the secret
(`Server=h;Port=5432;Database=d;User Id=u;Password=p;Ssl Mode=Require`);
libpq URIs and `key=value` strings are accepted too. The password never appears
in a repr, an error message or an argv: subprocesses get it through PGPASSWORD.

A secret's password may be sent only to the address the secret itself names
(`Server=`/`Port=`, or a URI's host and port): `same_address` is the one canonical
comparison (host case-insensitive, trailing dot and IPv6 brackets dropped, IP
addresses compared as addresses, no port means 5432).
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from pgvault.errors import Code, UserError

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
#: libpq's sslmodes, weakest first (the stricter of a server's and a secret's wins).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_PORT = 5432


def canonical_address(host: str, port: int | None) -> tuple[str, int]:
    """(host, port) as compared: lower case, no trailing dot or IPv6 brackets, IP
    addresses in their compressed form, 5432 when no port is given."""
    h = host.strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    with contextlib.suppress(ValueError):
        h = ipaddress.ip_address(h).compressed
    return h, port or DEFAULT_PORT


def same_address(host_a: str, port_a: int | None, host_b: str, port_b: int | None) -> bool:
    return canonical_address(host_a, port_a) == canonical_address(host_b, port_b)


def stricter_sslmode(a: str, b: str) -> str:
    """The stricter of two libpq sslmodes (unknown modes count as `prefer`)."""
    rank = {m: i for i, m in enumerate(SSL_MODES)}
    return max(a, b, key=lambda m: rank.get(m, rank["prefer"]))


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
        code=Code.UserErrorSecretValueInUnsupportedFormat,
        recommended_action="Update the key-vault secret with a valid connection string.",
    )


def _quoted(text: str, i: int, quote: str, backslash: bool) -> tuple[str, int]:
    """Read a quoted value starting at `text[i] == quote`; returns (value, index after it)."""
    out, i = [], i + 1
    while i < len(text):
        c = text[i]
        if backslash and c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif c == quote and not backslash and text[i + 1 : i + 2] == quote:
            out.append(quote)
            i += 2
        elif c == quote:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise _unsupported("a quoted value is not closed")


def _pairs(text: str) -> dict[str, str]:
    """ADO.NET (`k=v;k="v;v"`) or libpq (`k=v k='v v'`) pairs, keyed by libpq names."""
    ado = ";" in text
    separators = ";" if ado else " \t\n"
    out: dict[str, str] = {}
    i = 0
    while i < len(text):
        while i < len(text) and (text[i] in separators or text[i].isspace()):
            i += 1
        if i >= len(text):
            break
        eq = text.find("=", i)
        stop = min((p for p in (text.find(c, i) for c in separators) if p >= 0), default=-1)
        if eq < 0 or (0 <= stop < eq):
            raise _unsupported("a part has no '='")
        key = text[i:eq].strip().lower()
        i = eq + 1
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in ("\"'" if ado else "'"):
            value, i = _quoted(text, i, text[i], backslash=not ado)
        else:
            j = i
            while j < len(text) and text[j] not in separators:
                j += 1
            value, i = text[i:j].strip(), j
        name = _ADO_KEYS.get(key)
        if name:
            out[name] = value
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
