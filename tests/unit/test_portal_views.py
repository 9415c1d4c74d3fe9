"""The portal's pure helpers: live progress (ETA, the no-cancel phase), job filters, the SVG
chart, and the units pages show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from pgvault import jobs
from pgvault.portal import chart, render, views

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _job(
    operation: str, phase: str, done: int, total: int | None, status: str = "InProgress"
) -> jobs.Job:
    return jobs.Job(
        id="j1",
        vault_id="v",
        operation=operation,
        category="Restore" if operation == "Restore" else "Backup",
        status=status,
        phase=phase,
        bytes_done=done,
        bytes_total=total,
        created_at=NOW - timedelta(seconds=30),
        started_at=NOW - timedelta(seconds=20),
        params={},
    )


def test_progress_estimates_the_time_left_from_the_bytes_moved() -> None:
    p = views.progress(_job("Backup", "Transferring data", 250, 1000), NOW)
    assert (p.percent, p.elapsed, p.eta_seconds) == (25.0, 20.0, 60.0)
    assert p.running
    assert not p.no_cancel


def test_a_restore_transferring_data_can_no_longer_be_cancelled() -> None:
    assert views.progress(_job("Restore", "Transferring data", 1, 10), NOW).no_cancel
    assert not views.progress(_job("Restore", "Validating", 0, None), NOW).no_cancel
    ended = _job("Restore", "Transferring data", 10, 10, status="Completed")
    ended.ended_at = NOW
    assert not views.progress(ended, NOW).no_cancel
    assert views.progress(ended, NOW).eta_seconds is None


def test_chart_is_one_titled_bar_per_value_scaled_to_the_largest() -> None:
    svg = chart.bars([1, 2, 4], "Size", ["a", "b", "c<&>"])
    root = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.get("class") == "bar"]
    assert [float(b.get("height", 0)) for b in bars] == [18.0, 36.0, 72.0]
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Size"
    assert bars[2].find(f"{ns}title").text == "c<&>"  # type: ignore[union-attr]
    assert "No data yet" in chart.bars([], "Size")


def test_units_a_person_reads() -> None:
    assert render.size(512) == "512 B"
    assert render.size(3 * 1024 * 1024) == "3.0 MiB"
    assert render.size(None) == "—"
    assert render.seconds(4.25) == "4.2 s"
    assert render.seconds(65) == "1 min 5 s"
    assert render.seconds(3 * 3600 + 120) == "3 h 2 min"
    assert render.when(NOW) == "2026-01-05 12:00:00 UTC"
