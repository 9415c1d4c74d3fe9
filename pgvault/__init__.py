"""pgvault: a self-hosted backup vault for PostgreSQL, shaped like Azure Backup."""

__version__ = "0.1.0"
