"""Connection strings stored in key-vault secrets: ADO.NET, libpq URI and key=value."""

from __future__ import annotations

import pytest

from pgvault import connstr
from pgvault.errors import UserError

PASSWORD = "Sup3r-S3cret!pw"
CODE = "UserErrorSecretValueInUnsupportedFormat"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"Server=db.example.com;Port=5432;Database=sales;User Id=alice;Password={PASSWORD};"
            "Ssl Mode=Require;",
            ("alice", "db.example.com", 5432, "sales", "require"),
        ),
        (
            f"Host=h;Port=6543;Initial Catalog=d;Username=bob;Pwd={PASSWORD}",
            ("bob", "h", 6543, "d", "prefer"),
        ),
        (
            f"data source=h; uid=carol; password={PASSWORD}; sslmode=verify-full",
            ("carol", "h", None, None, "verify-full"),
        ),
        (
            f"SERVER=h;DATABASE=d;USER ID=dave;PASSWORD={PASSWORD};SSL MODE=VERIFY CA",
            ("dave", "h", None, "d", "verify-ca"),
        ),
        (
            f"Server=h;User Id=erin;Password={PASSWORD};Application Name=x;Pooling=true",
            ("erin", "h", None, None, "prefer"),
        ),
        (
            f"host=h port=5433 dbname=d user=frank password={PASSWORD} sslmode=disable",
            ("frank", "h", 5433, "d", "disable"),
        ),
        (
            f"postgresql://grace:{PASSWORD}@h.example:5434/appdb?sslmode=require",
            ("grace", "h.example", 5434, "appdb", "require"),
        ),
        (
            f"postgres://heidi:{PASSWORD}@h/d",
            ("heidi", "h", None, "d", "prefer"),
        ),
        (
            f"  postgresql://ivan:{PASSWORD}@[::1]:5432/d  ",
            ("ivan", "::1", 5432, "d", "prefer"),
        ),
    ],
)
def test_parses_supported_formats(text: str, expected: tuple[object, ...]) -> None:
    creds = connstr.parse(text)
    assert (creds.user, creds.host, creds.port, creds.dbname, creds.sslmode) == expected
    assert creds.password == PASSWORD


def test_uri_components_are_percent_decoded() -> None:
    creds = connstr.parse("postgresql://us%40er:p%40ss%2Fw%3Ard@h:5432/my%20db")
    assert creds.user == "us@er"
    assert creds.password == "p@ss/w:rd"
    assert creds.dbname == "my db"


def test_ado_password_may_contain_equals_sign() -> None:
    creds = connstr.parse("Server=h;User Id=u;Password=a=b==c;")
    assert creds.password == "a=b==c"


def test_ado_single_quoted_value_is_unquoted() -> None:
    creds = connstr.parse("Server=h;User Id=u;Password='quoted pw';")
    assert creds.password == "quoted pw"


def test_empty_password_is_allowed_when_given() -> None:
    assert connstr.parse("Server=h;User Id=u;Password=;").password == ""


def test_repr_and_str_hide_the_password() -> None:
    creds = connstr.parse(f"Server=h;Port=5432;User Id=u;Password={PASSWORD};")
    assert PASSWORD not in repr(creds)
    assert PASSWORD not in str(creds)
    assert "u" in repr(creds)


def test_credentials_are_immutable() -> None:
    creds = connstr.parse(f"Server=h;User Id=u;Password={PASSWORD};")
    with pytest.raises(AttributeError):
        creds.password = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        f"Server=h;Port=abc;Database=d;User Id=u;Password={PASSWORD};",
        f"Server=h;Port=0;Database=d;User Id=u;Password={PASSWORD};",
        f"Server=h;Port=70000;Database=d;User Id=u;Password={PASSWORD};",
        f"Server=h;Port=-1;Database=d;User Id=u;Password={PASSWORD};",
        f"postgresql://u:{PASSWORD}@h:notaport/d",
        f"postgresql://u:{PASSWORD}@h:99999/d",
        f"Server=h;User Id=u;Password={PASSWORD};Ssl Mode=Sometimes",
        f"postgresql://u:{PASSWORD}@h/d?sslmode=bogus",
        f"Server=h;Password={PASSWORD};",
        f"postgresql://:{PASSWORD}@h/d",
        "Server=h;User Id=u;",
        "postgresql://u@h/d",
        f"Server=h;User Id=u;Password={PASSWORD};garbage",
        "",
        "   ",
        "just some text",
    ],
)
def test_unusable_strings_are_refused_without_leaking_the_password(text: str) -> None:
    with pytest.raises(UserError) as info:
        connstr.parse(text)
    exc = info.value
    assert exc.code == CODE
    assert exc.status == 400
    assert PASSWORD not in str(exc)
    assert PASSWORD not in exc.message
    assert PASSWORD not in repr(exc)
    assert PASSWORD not in str(exc.to_body())
    # The original parsing error (e.g. urllib's ValueError) is not chained into tracebacks.
    assert exc.__cause__ is None


def test_none_is_refused() -> None:
    with pytest.raises(UserError) as info:
        connstr.parse(None)  # type: ignore[arg-type]
    assert info.value.code == CODE


def test_libpq_quoted_value_with_space() -> None:
    """libpq key=value strings allow single-quoted values containing spaces."""
    creds = connstr.parse("host=h user=u password='p w' dbname=d")
    assert creds.password == "p w"
    assert creds.dbname == "d"


def test_ado_double_quoted_value_with_semicolon() -> None:
    """ADO.NET (Npgsql) quotes a value containing ';' with double quotes."""
    creds = connstr.parse('Server=h;User Id=u;Password="a;b";Database=d')
    assert creds.password == "a;b"
    assert creds.dbname == "d"
