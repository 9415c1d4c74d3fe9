"""Request-body helpers: case-insensitive keys and enum values."""

from __future__ import annotations

import pytest

from pgvault import jsonbody as b
from pgvault.errors import BadRequest

DOC = {"properties": {"dataSourceInfo": {"resourceID": "/x", "count": 3}, "flag": False}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("properties", "dataSourceInfo", "resourceID"), "/x"),
        (("PROPERTIES", "datasourceinfo", "ResourceId"), "/x"),
        (("properties", "DataSourceInfo", "count"), 3),
        (("properties", "flag"), False),
        (("properties", "missing"), None),
        (("properties", "dataSourceInfo", "resourceID", "deeper"), None),
        ((), DOC),
    ],
)
def test_get(path: tuple[str, ...], expected: object) -> None:
    assert b.get(DOC, *path) == expected


def test_get_exact_key_wins_over_case_insensitive_match() -> None:
    assert b.get({"Name": 1, "name": 2}, "name") == 2
    assert b.get({"Name": 1, "name": 2}, "Name") == 1


@pytest.mark.parametrize("obj", [None, [], "text", 5])
def test_get_on_non_objects(obj: object) -> None:
    assert b.get(obj, "a") is None
    assert b.get(obj, "a", default="d") == "d"


def test_get_default_when_missing() -> None:
    assert b.get({"a": {}}, "a", "b", default=7) == 7
    assert b.get({"a": None}, "a", default=7) is None


def test_require_returns_value() -> None:
    assert b.require(DOC, "properties", "datasourceinfo", "resourceid") == "/x"
    assert b.require(DOC, "properties", kind=dict) == DOC["properties"]
    assert b.require(DOC, "properties", "dataSourceInfo", "count", kind=object) == 3


@pytest.mark.parametrize(
    ("obj", "path", "kind"),
    [
        (DOC, ("properties", "missing"), str),
        (DOC, ("properties", "dataSourceInfo", "count"), str),
        (DOC, ("properties",), str),
        (None, ("location",), str),
        ({"location": None}, ("location",), str),
        ({"location": ["eastus"]}, ("location",), str),
        ({"x": "y"}, ("x",), dict),
    ],
)
def test_require_missing_or_mistyped(obj: object, path: tuple[str, ...], kind: type) -> None:
    with pytest.raises(BadRequest) as info:
        b.require(obj, *path, kind=kind)
    assert info.value.code == "InvalidRequestContent"
    assert info.value.target == ".".join(path)
    assert ".".join(path) in info.value.message


@pytest.mark.parametrize(
    ("value", "expected", "result"),
    [
        ("FailIfExists", "FailIfExists", True),
        ("failifexists", "FailIfExists", True),
        ("FAILIFEXISTS", "FailIfExists", True),
        ("FailIfExist", "FailIfExists", False),
        (None, "FailIfExists", False),
        (1, "1", False),
    ],
)
def test_same(value: object, expected: str, result: bool) -> None:
    assert b.same(value, expected) is result


def test_as_dict() -> None:
    assert b.as_dict(None, "properties") == {}
    d = {"a": 1}
    assert b.as_dict(d, "properties") is d


@pytest.mark.parametrize("value", [[], "x", 1, True])
def test_as_dict_rejects_non_objects(value: object) -> None:
    with pytest.raises(BadRequest) as info:
        b.as_dict(value, "properties")
    assert info.value.code == "InvalidRequestContent"
    assert "properties" in info.value.message
