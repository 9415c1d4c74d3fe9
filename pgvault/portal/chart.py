"""A small bar chart as inline SVG, drawn on the server (no JavaScript, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 320, 80, 4


def bars(values: Sequence[float], title: str, labels: Sequence[str] = ()) -> str:
    """An SVG bar per value (oldest first), scaled to the largest; titled for screen readers.

    Each bar carries a <title> with its label, so hovering tells the value.
    """
    head = (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" class="chart-bg"/>'
    )
    if not values:
        return head + f'<text x="{PAD}" y="{HEIGHT // 2}">No data yet</text></svg>'
    top = max(values) or 1.0
    step = (WIDTH - 2 * PAD) / len(values)
    width = max(step - 2, 1)
    parts = [head]
    for i, value in enumerate(values):
        h = max((HEIGHT - 2 * PAD) * value / top, 1)
        x = PAD + i * step
        y = HEIGHT - PAD - h
        label = escape(labels[i]) if i < len(labels) else ""
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}">'
            f"<title>{label}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)
