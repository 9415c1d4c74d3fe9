"""The backup engine: pg_dump / pg_restore streamed through zstd to and from object storage.

No I/O of metadata here: the engine moves bytes and reports progress; the jobs
layer decides what becomes visible.
"""
