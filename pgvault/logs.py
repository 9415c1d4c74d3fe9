"""Log format and correlation ids: JSON lines on request, the request and job ids in context.

`request_id` is set per API request (the ASGI middleware in `api.app`), `job_id` by a worker
around a job's `run`; both are context variables, so every log record made in that request
or job carries them. Messages are logged as given: callers never pass secrets to a logger.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("pgvault_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("pgvault_job_id", default=None)

PLAIN = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("plain", "json")

#: A client's correlation id is echoed only if it is a short token (a GUID fits).
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def client_request_id(value: str | None) -> str | None:
    """The client's `x-ms-client-request-id` if it is a short plain token, else None."""
    if value and _CLIENT_ID.fullmatch(value):
        return value
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, job_id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid, jid = request_id.get(), job_id.get()
        if rid is not None:
            entry["request_id"] = rid
        if jid is not None:
            entry["job_id"] = jid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(fmt: str = "plain", level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr in `fmt` ("plain" or "json")."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
