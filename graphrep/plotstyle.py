"""One plot style for every figure graphrep draws: the simulator's sequence chart and
fault timeline (:mod:`graphrep.sim.plots`) and the experiments' figures
(:mod:`graphrep.exp`).

* :func:`style`: a context in which figures are drawn (font sizes, a light grid,
  legends without frames, no date in vector output);
* :func:`new_figure`: a figure on the Agg canvas, with no pyplot and no global state;
* :func:`save`: a figure to a file whose format follows the suffix, deterministic for
  SVG and PDF (no date, a fixed id salt); :func:`save_all` writes PNG and PDF beside
  each other, and a caption file saying what made the figure;
* :func:`colors`: one colour per label, stable across figures (sorted labels, tab10).

matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["STYLE", "colors", "new_figure", "save", "save_all", "style"]

STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "legend.frameon": False, "savefig.dpi": 130, "svg.hashsalt": "graphrep",
    "svg.fonttype": "none",
}
"""The rcParams every figure is drawn with."""


@contextmanager
def style() -> Iterator[None]:
    """Draw (and save) figures inside this context to get :data:`STYLE`."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float, **kwargs: Any) -> Any:
    """A figure of ``width`` x ``height`` inches on the Agg canvas (constrained layout)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG without one)."""
    import matplotlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "png"
    metadata = {"Date": None} if fmt in ("svg", "pdf") else {}
    with matplotlib.rc_context({"svg.hashsalt": "graphrep", "svg.fonttype": "none"}):
        fig.savefig(path, format=fmt, metadata=metadata)
    return path


def save_all(fig: Any, stem: str | Path, caption: str | None = None,
             formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` (``formats``), and ``caption`` (what
    command and config made it) as ``stem.caption.txt``; returns the paths written."""
    stem = Path(stem)
    paths = [save(fig, stem.with_name(f"{stem.name}.{fmt}")) for fmt in formats]
    if caption is not None:
        cap = stem.with_name(f"{stem.name}.caption.txt")
        cap.write_text(caption.rstrip() + "\n")
        paths.append(cap)
    return paths


def colors(labels: Iterable[str]) -> dict[str, Any]:
    """One tab10 colour per distinct label, in sorted order."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {lab: cmap(i % 10) for i, lab in enumerate(sorted(set(labels)))}
