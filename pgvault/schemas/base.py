"""The base of every request body: Azure's field names, matched the way Azure matches them.

Azure's REST API reads JSON keys case-insensitively and ignores what it does not know (its
SDKs send extras such as `objectType`), so every body model here does the same: a
before-validator maps each key onto the field's alias whatever its case, recursively since
nested models share the base. A failed validation becomes the 400 Azure clients expect,
naming the field (`InvalidRequestContent`, or a `UserError*` code a validator chose).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError

from pgvault.errors import BadRequest, Code

T = TypeVar("T")
M = TypeVar("M", bound="AzureModel")

INVALID = Code.InvalidRequestContent


def _number(value: object) -> int | float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise PydanticCustomError("number_type", "Input should be a number")
    return value


# A JSON number, kept as sent (Pydantic's lax int/float would take true or "14"; a union of
# the strict ones would report one error per member).
Number = Annotated[int | float, PlainValidator(_number), WithJsonSchema({"type": "number"})]


def _present(value: T | None) -> T:
    if value is None:
        raise PydanticCustomError("null_value", "must not be null")
    return value


class _NotNullInSchema:
    """Drop `null` from a field's JSON schema: the field may be left out, not sent as null."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        kinds = [k for k in schema.get("anyOf", ()) if k.get("type") != "null"]
        if len(kinds) == 1:
            del schema["anyOf"]
            schema.update(kinds[0])
        return schema


# A field that may be left out but, when sent, may not be null: settings are merged into what
# is stored, and a null there would replace a whole section of it.
Present = Annotated[T | None, AfterValidator(_present), _NotNullInSchema()]


def user_error(code: Code, message: str) -> PydanticCustomError:
    """A validation error that answers with Azure's specific `code` instead of the generic one."""
    return PydanticCustomError(code, message)


class AzureModel(BaseModel):
    """A request body or part of one: Azure's names as aliases, keys in any case, extras ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _azure_keys(cls, data: object) -> object:
        """Rename keys onto aliases case-insensitively; a key spelled exactly wins a clash."""
        if not isinstance(data, Mapping):
            return data
        names: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            names[name.lower()] = names[alias.lower()] = alias
        exact = set(names.values())
        out: dict[object, object] = {}
        for key, value in data.items():
            if isinstance(key, str) and key not in exact:
                out.setdefault(names.get(key.lower(), key), value)
        for key, value in data.items():
            if isinstance(key, str) and key in exact:
                out[key] = value
        return out


def lookup(data: object, key: str) -> object:
    """`data[key]` matching the key case-insensitively (None when absent or not an object)."""
    if not isinstance(data, Mapping):
        return None
    if key in data:
        return data[key]
    lowered = key.lower()
    return next(
        (v for k, v in data.items() if isinstance(k, str) and k.lower() == lowered),
        None,
    )


def where(loc: Sequence[int | str]) -> str:
    """`properties.storageSettings[0].type` from a Pydantic error location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def bad_request(errors: Sequence[ErrorDetails], *, skip: int = 0) -> BadRequest:
    """The 400 for a failed validation: its first error, naming the field.

    `skip` drops leading location parts that are not in the body (FastAPI's "body").
    """
    if not errors:
        return BadRequest("The request body is not valid.", code=INVALID)
    first = errors[0]
    field = "" if first["type"] == "json_invalid" else where(first["loc"][skip:])
    if first["type"].startswith("UserError"):
        return BadRequest(first["msg"], code=Code.stored(first["type"]), target=field or None)
    if first["type"] == "missing":
        message = f"The request body needs {field}." if field else "The request needs a body."
    elif first["type"] == "json_invalid":
        message = f"The request body is not valid JSON: {first['msg']}."
    elif field:
        message = f"Invalid request body: {field}: {first['msg']}."
    else:
        message = f"Invalid request body: {first['msg']}."
    return BadRequest(message, code=INVALID, target=field or None)


def parse(model: type[M], data: object) -> M:
    """Validate `data` (parsed JSON) as `model`, failing with the 400 a route would answer."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise bad_request(exc.errors()) from None
