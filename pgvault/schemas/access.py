"""Bodies of the identity and access API: principals, role definitions, role assignments.

The OAuth2 token and revoke endpoints take forms, as OAuth2 does, not these.
"""

from __future__ import annotations

from pydantic import JsonValue

from pgvault.schemas.base import AzureModel


class PrincipalProperties(AzureModel):
    principal_type: str | None = None


class PrincipalBody(AzureModel):
    """PUT of a principal: a user or a service principal (user when not said)."""

    type: str | None = None
    properties: PrincipalProperties | None = None

    @property
    def kind(self) -> str:
        props = self.properties
        return (props.principal_type if props else None) or self.type or "user"


class Permission(AzureModel):
    """One permission block; `pgvault.rbac` checks each list and names the wrong one."""

    actions: JsonValue = None
    not_actions: JsonValue = None
    data_actions: JsonValue = None
    not_data_actions: JsonValue = None

    def granted(self) -> dict[str, JsonValue]:
        return {
            "actions": self.actions or [],
            "notActions": self.not_actions or [],
            "dataActions": self.data_actions or [],
        }


class RoleDefinitionProperties(AzureModel):
    role_name: str
    description: str | None = None
    permissions: list[Permission] | None = None
    assignable_scopes: list[str] | None = None

    def granted(self) -> dict[str, JsonValue]:
        """The first permission block (a custom role has one), empty when none is given."""
        return (self.permissions or [Permission()])[0].granted()


class RoleDefinitionBody(AzureModel):
    """PUT of a custom role definition."""

    properties: RoleDefinitionProperties


class RoleAssignmentProperties(AzureModel):
    role_definition_id: str
    principal_id: str
    principal_type: str | None = None


class RoleAssignmentBody(AzureModel):
    """PUT of a role assignment: a role (by id or name) for a principal (by id, name or client id)."""

    properties: RoleAssignmentProperties
