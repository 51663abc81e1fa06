"""Plots of a training run (attention maps live in ``nanotf.viz``).

Figures are drawn with matplotlib's object API on an Agg canvas (``matplotlib.figure.Figure``,
no ``pyplot``), so plotting works on a machine without a display, inside tests, and never
changes the global matplotlib backend or leaves figures open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_loss_curve", "smooth"]


def smooth(values: Sequence[float], weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard's smoothing):
    ``s_t = w·s_{t-1} + (1 - w)·x_t``, divided by ``1 - w^t`` so the first points are not
    pulled towards zero."""
    x = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out = np.empty_like(x)
    s = 0.0
    for i, v in enumerate(x):
        s = weight * s + (1.0 - weight) * v
        out[i] = s / (1.0 - weight ** (i + 1))
    return out


def _field(history: Any, name: str) -> list[Any]:
    if isinstance(history, Mapping):
        return list(history.get(name, []))
    return list(getattr(history, name, []))


def _minor_label(value: float, _pos: int) -> str:
    """Label the minor ticks 2, 3 and 5 of each decade of a log axis (0.2, 0.3, 0.5, 2, ...)."""
    if value <= 0:
        return ""
    mantissa = round(value / 10 ** np.floor(np.log10(value)), 6)
    return f"{value:g}" if mantissa in (2.0, 3.0, 5.0) else ""


def _log_scale(ax: Any) -> None:
    """A log y axis labelled with plain numbers (0.2, 0.5, 1, 2, ...)."""
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))


def _plot_evals(
    ax: Any, evals: list[dict[str, Any]], key: str, style: str, color: str, label: str
) -> None:
    """One held-out metric (``key``) against the step of each evaluation."""
    steps = [e["step"] for e in evals]
    ax.plot(steps, [e[key] for e in evals], style, color=color, markersize=4, label=label)


def plot_loss_curve(
    history: Any,
    path: str | os.PathLike[str],
    title: str | None = None,
    floor: float | None = None,
) -> Path:
    """Save a PNG of a run's training loss per step (raw and smoothed), the held-out loss at
    each evaluation and, on a second axis, the held-out exact match.

    ``history`` is a :class:`nanotf.train.History` or its ``to_dict()``. ``floor`` draws the
    least loss the training objective allows (with label smoothing it is above zero:
    ``nanotf.train.smoothed_loss_floor``). Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = _field(history, "step")
    loss = _field(history, "loss")
    evals = _field(history, "evals")
    if not loss:
        raise ValueError("plot_loss_curve: the history has no losses (train for a step first)")
    fig = Figure(figsize=(7.0, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="train loss")
    ax.plot(steps, smooth(loss), color="tab:blue", linewidth=1.6, label="train loss (average)")
    if evals:
        _plot_evals(ax, evals, "loss", "o-", "tab:orange", "held-out loss (no label smoothing)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per target token (log scale)")
    if floor is not None:
        ax.axhline(
            floor,
            color="tab:blue",
            linestyle=":",
            linewidth=1.0,
            label=f"least possible train loss ({floor:.3g})",
        )
    if min(loss) > 0:
        _log_scale(ax)
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if evals and "exact_match" in evals[0]:
        ax2 = ax.twinx()
        _plot_evals(ax2, evals, "exact_match", "s--", "tab:green", "held-out exact match")
        ax2.set_ylabel("exact match")
        ax2.set_ylim(-0.02, 1.02)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="center right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
