"""What the Dockerfile installs is a working pgvault.

The image is built elsewhere (this machine has no Docker daemon), so this test does the
image's own install step on the same files: the sources its `COPY` lines name, built into a
wheel (`pip install .` does the same build) and installed on its own. The wheel holds every
module, migration, template and static file of the package, and a `pgvault serve` run from
that install alone (not this checkout) migrates a fresh home, answers `/readyz` and serves the
portal's sign-in page with its stylesheet and htmx.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx

from tests.support.pg import free_port

ROOT = Path(__file__).resolve().parents[2]
#: Authoring-only files the package does not need at run time.
NOT_SHIPPED = {"pgvault/migrations/script.py.mako"}


def _copied_sources(into: Path) -> None:
    """Copy what the Dockerfile's COPY lines copy, where they put it."""
    copies = [
        line.split()[1:] for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    ]  # fmt: skip
    assert copies == [["pyproject.toml", "README.md", "./"], ["pgvault", "./pgvault"]]
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, into / name)
    shutil.copytree(
        ROOT / "pgvault", into / "pgvault", ignore=shutil.ignore_patterns("__pycache__")
    )


def _package_files() -> set[str]:
    return {
        str(p.relative_to(ROOT))
        for p in (ROOT / "pgvault").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    } - NOT_SHIPPED


def test_the_images_install_holds_and_serves_everything(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _copied_sources(src)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dist), str(src)],
                   check=True, timeout=600)  # fmt: skip
    (wheel,) = dist.glob("pgvault-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith("pgvault/")}
    assert _package_files() <= shipped, sorted(_package_files() - shipped)

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
    env.update(PYTHONPATH=str(site), PGVAULT_HOME=str(home))  # the install first on the path
    code = (
        "import sys, pgvault; print('pgvault from', pgvault.__file__, flush=True);"
        "from pgvault.cli.main import main; sys.argv[0] = 'pgvault'; main()"
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert f"pgvault from {site}" in log.read_text()  # not this checkout's sources
        page = httpx.get(f"{base}/signin", timeout=10)
        assert page.status_code == 200
        assert "/static/htmx.min.js" in page.text
        for asset in ("htmx.min.js", "portal.css"):
            got = httpx.get(f"{base}/static/{asset}", timeout=10)
            assert got.status_code == 200
            assert got.content == (ROOT / "pgvault" / "portal" / "static" / asset).read_bytes()
    finally:
        proc.terminate()
        proc.wait(30)
