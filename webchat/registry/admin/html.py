"""HTML pieces the registry and curation admins show: status badges, the metrics table, the gate
report and the loss curve. Every cell is escaped; the SVG is built from numbers only."""

from django.utils.html import format_html, format_html_join

from webchat.registry.selectors import metrics_table


def badge(status: str, colours: dict[str, str]) -> str:
    """A status in its colour (`colours` maps every status to a CSS colour for a light page;
    webchat/admin.css lightens it on the admin's dark theme)."""
    return format_html('<b class="status-badge" style="--badge:{}">{}</b>', colours[status], status)


def log_html(text: str) -> str:
    """A job's log tail in a scrollable block."""
    return format_html('<pre style="max-height:24em;overflow:auto">{}</pre>', text)


def metrics_table_html(versions) -> str:
    """The side-by-side metrics table as admin HTML (escaped cells)."""
    table = metrics_table(list(versions))
    if not table["columns"]:
        return "<p>No versions.</p>"
    head = format_html_join("", "<th>{}</th>", ((c,) for c in table["columns"]))
    body = format_html_join(
        "",
        "<tr><td>{}</td>{}</tr>",
        (
            (label, format_html_join("", "<td>{}</td>", ((c,) for c in cells)))
            for label, cells in table["rows"]
        ),
    )
    return format_html(
        '<table class="metrics-table"><thead><tr><th>metric</th>{}</tr></thead>'
        '<tbody>{}</tbody></table><p class="help">Evaluation settings {} (promotion policy).'
        "</p>",
        head,
        body,
        table["config_key"],
    )


def gates_html(report: dict) -> str:
    """A promotion-gate report (`gates.promotion_gates`) as a verdict and one line a check."""
    rows = format_html_join(
        "",
        "<li>{} {}: {}</li>",
        (("✔" if c["passed"] else "✘", c["name"], c["detail"]) for c in report["checks"]),
    )
    verdict = "passes" if report["passed"] else "does not pass"
    return format_html(
        "<p><b>{} {} the promotion gates</b> against {}.</p><ul>{}</ul>",
        report["candidate"],
        verdict,
        report["active"] or "no active version",
        rows,
    )


def loss_curve_svg(points, width=640, height=200) -> str:
    """An inline SVG polyline of [step, loss] points (no JavaScript, no external assets)."""
    if len(points) < 2:
        return "<p>No loss values yet.</p>"
    if len(points) > 400:  # keep the page light: sample evenly, always keep the last point
        stride = len(points) / 400
        points = [points[int(i * stride)] for i in range(400)] + [points[-1]]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 30
    sx = (width - 2 * pad) / max(1e-9, x1 - x0)
    sy = (height - 2 * pad) / max(1e-9, y1 - y0)
    coords = " ".join(
        f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in zip(xs, ys)
    )
    return (
        f'<svg class="loss-curve" width="{width}" height="{height}" role="img" '
        f'aria-label="loss curve" style="background:#fff;border:1px solid #ddd">'
        f'<polyline fill="none" stroke="#10a37f" stroke-width="1.5" points="{coords}"/>'
        f'<text x="{pad}" y="16" font-size="11">loss {y1:.3f}</text>'
        f'<text x="{pad}" y="{height - 8}" font-size="11">min {y0:.3f} · last {ys[-1]:.3f} '
        f"· {len(xs)} points</text></svg>"
    )


def dev_curve_svg(points, width=420, height=200) -> str:
    """An inline SVG of a fine-tune's dev accuracy: [step, clean, robust or None] points, clean
    in green and robust (under the dev perturbation) in orange, on a 0-100% axis."""
    if not points:
        return "<p>No dev evaluations (the run evaluates on the dev split every few steps).</p>"
    pad = 30
    steps = [p[0] for p in points]
    x0, x1 = min(steps), max(steps)
    sx = (width - 2 * pad) / max(1e-9, x1 - x0)
    sy = height - 2 * pad  # accuracy 0..1 fills the plot's height

    def line(index: int, colour: str) -> str:
        coords = " ".join(
            f"{pad + (p[0] - x0) * sx:.1f},{height - pad - float(p[index]) * sy:.1f}"
            for p in points
            if len(p) > index and p[index] is not None
        )
        if not coords:
            return ""
        return (
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
            + "".join(
                f'<circle r="2" fill="{colour}" cx="{c.split(",")[0]}" cy="{c.split(",")[1]}"/>'
                for c in coords.split()
            )
        )

    last = points[-1]
    robust = "—" if len(last) < 3 or last[2] is None else f"{100 * last[2]:.1f}%"
    return (
        f'<svg class="dev-curve" width="{width}" height="{height}" role="img" '
        f'aria-label="dev accuracy curve" style="background:#fff;border:1px solid #ddd">'
        f"{line(1, '#10a37f')}{line(2, '#d97706')}"
        f'<text x="{pad}" y="16" font-size="11">dev accuracy: clean (green), robust (orange)'
        f"</text>"
        f'<text x="{pad}" y="{height - 8}" font-size="11">step {last[0]}: clean '
        f"{100 * last[1]:.1f}% · robust {robust} · {len(points)} evaluations</text></svg>"
    )
