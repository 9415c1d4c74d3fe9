"""`pgvault demo`: the README's first command, end to end, as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import PGVAULT_BIN


def test_demo_walks_through_then_serves_the_portal_until_ctrl_c() -> None:
    proc = subprocess.Popen(
        [PGVAULT_BIN, "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PGVAULT_", "PG"))}
        | {"NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("== Portal:") or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "OK: the restored database equals the source" in text, text
        assert re.search(r"backup now +→ job Completed in", text), text
        assert re.search(r"restore database +→ job Completed in", text), text
        assert re.search(r"restore files +→ job Completed in", text), text
        work = Path(re.search(r"\((/tmp/pgvault-demo-[^)]+)\)", text).group(1))  # type: ignore[union-attr]
        url = re.search(r"== Portal: (http://\S+)/", text).group(1)  # type: ignore[union-attr]
        signin = httpx.get(url + "/signin", timeout=10)
        assert signin.status_code == 200
        assert "Sign in to pgvault" in signin.text
        assert httpx.get(url + "/", timeout=10, follow_redirects=False).status_code == 303
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == 0, "".join(lines)
    assert not work.exists()  # everything the demo made is gone
