"""Figures of a solution and its error, rendered to arrays for the logger (no pyplot, no display)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def solution_figure(coords: np.ndarray, predicted: np.ndarray, exact: np.ndarray | None, *,
                    labels: tuple[str, str] = ("x0", "x1"), title: str = "") -> np.ndarray:
    """Predicted field and pointwise error on a line (``coords`` ``(R,)``) or a slice
    (``coords`` ``(2, R, R)``, fields ``(R, R)``); returns an ``(H, W, 3)`` uint8 image."""
    panels = 1 if exact is None else 2
    fig = Figure(figsize=(5 * panels, 4), dpi=80)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if coords.ndim == 1:
        axes[0].plot(coords, predicted, label="predicted")
        if exact is not None:
            axes[0].plot(coords, exact, "--", label="exact")
            axes[1].semilogy(coords, np.abs(predicted - exact) + 1e-300)
            axes[1].set_title("|error|")
        axes[0].legend()
        axes[0].set_title("u")
    else:
        extent = (coords[0].min(), coords[0].max(), coords[1].min(), coords[1].max())
        im = axes[0].imshow(predicted.T, origin="lower", extent=extent, cmap="viridis")
        fig.colorbar(im, ax=axes[0])
        axes[0].set_title("predicted u")
        if exact is not None:
            im = axes[1].imshow(np.abs(predicted - exact).T, origin="lower", extent=extent, cmap="magma")
            fig.colorbar(im, ax=axes[1])
            axes[1].set_title("|error|")
        for ax in axes:
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _render(fig)
