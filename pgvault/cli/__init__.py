"""The `pgvault` command line: a thin client of the REST API, like `az`."""
