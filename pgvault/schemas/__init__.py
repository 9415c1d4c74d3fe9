"""Request bodies as Pydantic models, shared by the API and the portal's forms.

Azure's field names are the aliases and are matched case-insensitively (`base.AzureModel`);
each body converts to what the services take.
"""
