"""The drift report: `report.json` (every figure, its bound, the verdict) and `report.html` (the
same as a table, with the length and score distributions drawn against training's).

Both are written into a temp folder that replaces `reports/monitor/` as a whole, so a failed run
leaves the previous complete report (or none), never half of a new one.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from steps.monitoring.drift import SCORE_EDGES, Figure
from steps.stage.files import atomic_dir, write_json
from steps.stage.paths import MONITOR_HTML_NAME, MONITOR_JSON_NAME


def write_report(
    summary: dict[str, Any],
    figures: list[Figure],
    profile: dict[str, Any],
    lengths: np.ndarray,
    scores: np.ndarray,
    report_dir: Path,
) -> Path:
    """Write report.json and report.html into `report_dir` (replaced whole); the folder."""
    crossed = [f for f in figures if f.crossed]
    record = {
        **summary,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "drift": bool(crossed),
        "crossed": [f.verdict() for f in crossed],
        "figures": [f.to_dict() for f in figures],
    }
    plots = _plots(profile, lengths, scores)
    with atomic_dir(report_dir) as tmp:
        write_json(tmp / MONITOR_JSON_NAME, record)
        (tmp / MONITOR_HTML_NAME).write_text(_html(record, plots), encoding="utf-8")
    return Path(report_dir)


def _plots(profile: dict[str, Any], lengths: np.ndarray, scores: np.ndarray) -> str:
    import matplotlib

    matplotlib.use("Agg")  # files only (set here, not at import time)
    import matplotlib.pyplot as plt

    train_lengths = np.asarray(profile["review_chars"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = [
        (axes[0], train_lengths, lengths, _fitted_bins(train_lengths, lengths), "log10 characters",
         "review length", np.log10),
        (axes[1], np.asarray(profile["scores"]), scores, SCORE_EDGES, "probability of positive",
         "predicted score", None),
    ]  # fmt: skip
    for ax, train, batch, bins, xlabel, title, transform in panels:
        train = transform(np.maximum(train, 1)) if transform else train
        batch = transform(np.maximum(batch, 1)) if transform else batch
        ax.hist(train, bins=bins, density=True, alpha=0.5, label="training (validation split)")
        ax.hist(batch, bins=bins, density=True, alpha=0.5, label="batch")
        ax.set(xlabel=xlabel, title=title)
        ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _fitted_bins(*samples: np.ndarray, count: int = 30) -> np.ndarray:
    """Equal bins on log10 of the lengths from the shortest review to the longest, of either
    sample: the drift figure's deciles (drift.length_edges) open to 0 and 1e9 and would leave
    most of the plot empty."""
    logs = np.log10(np.maximum(np.concatenate([np.asarray(s, dtype=float) for s in samples]), 1))
    low, high = (float(logs.min()), float(logs.max())) if logs.size else (0.0, 1.0)
    if high - low < 0.1:
        low, high = low - 0.05, high + 0.05
    return np.linspace(low, high, count + 1)


def _html(record: dict[str, Any], plot_png: str) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape("" if value is None else str(value))

    rows = "\n".join(
        f'<tr class="{"crossed" if f["crossed"] else "ok"}"><td>{cell(f["name"])}</td>'
        f"<td>{cell(f['value'])}</td><td>{cell(f['bound'])}</td><td>{cell(f['bound_key'])}</td>"
        f"<td>{'DRIFT' if f['crossed'] else 'ok'}</td><td>{cell(f['batch'])}</td>"
        f"<td>{cell(f['training'])}</td><td>{cell(f['detail'])}</td></tr>"
        for f in record["figures"]
    )
    verdict = "; ".join(record["crossed"]) if record["drift"] else "no figure over its bound"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {cell(record["model"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
tr.crossed{{background:#fdd}}</style></head><body>
<h1>Drift report</h1>
<p>Model <b>{cell(record["model"])}</b>; batch <b>{cell(record["batch"])}</b>:
{record["reviews"]:,} reviews{" with labels" if record["labelled"] else ""};
{cell(record["created"])}.</p>
<p><b>{"DRIFT" if record["drift"] else "No drift"}</b>: {cell(verdict)}</p>
<table><tr><th>figure</th><th>value</th><th>bound</th><th>params.yaml</th><th>verdict</th>
<th>batch</th><th>training</th><th>note</th></tr>
{rows}
</table>
<p><img alt="review length and predicted score, training against batch"
src="data:image/png;base64,{plot_png}"></p>
</body></html>
"""
