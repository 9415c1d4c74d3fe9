"""Support code for ``benchmarks/run.py``: pgvault against the raw PostgreSQL tools.

Kept as a package beside ``run.py`` (not inside ``pgvault``) so the benchmark never imports
the code it measures: it drives pgvault only through its CLI, like a user would.
"""
