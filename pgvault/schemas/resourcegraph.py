"""The body of a Resource Graph query (`POST /providers/Microsoft.ResourceGraph/resources`)."""

from __future__ import annotations

from pydantic import Field, JsonValue

from pgvault.schemas.base import AzureModel


class ResourceGraphBody(AzureModel):
    """A query over the caller's subscriptions (all of them when none are named)."""

    query: str = Field(max_length=8000)
    subscriptions: list[str] | None = Field(default=None, max_length=1000)
    options: dict[str, JsonValue] | None = None
