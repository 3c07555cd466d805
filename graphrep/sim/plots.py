"""Drawings of a run's trace, after Maelstrom's ``messages.svg`` and its fault timeline.

* :func:`sequence_chart`: one vertical lifeline per node, time flowing down, an arrow
  per delivered message from its send to its delivery, a dashed line ending in an ``x``
  per dropped message, crashes, restarts and pauses marked on the lifelines;
* :func:`fault_timeline`: one row per node with its down and paused intervals (and the
  links it held) as bars, partitions as shaded spans, and a ``network`` row with the
  periods of loss, duplication and reordering.

Both read only the trace (plus the node list, which fixes the order of the columns or
rows), so they work on any run, and write a file whose format follows the path's suffix
(``.svg``, ``.png``, ``.pdf``). Each drawn element carries a ``gid`` such as
``deliver-12``, ``drop-3``, ``crash-0`` or ``partition-1``; SVG output keeps those as
element ids, which is what lets a test count what was drawn in the file itself. SVG
output is deterministic (no date, fixed id salt): the same trace gives the same bytes.

matplotlib is imported inside the functions, with the Agg canvas and no pyplot, so that
importing this module costs nothing and no global figure state is touched.

**Pairing sends with deliveries.** The trace does not give a message an identity: a
record is ``(time_ns, kind, src, dst, payload, note)``. Messages are therefore paired by
``(src, dst, payload digest)``: deliveries and drops on arrival (``partition``,
``down``) take the oldest unpaired send with that key (FIFO); a loss drop, a
duplication and a reordering are recorded by the engine right after their send, at the
same time, so they refer to the newest one (a duplicate adds a second copy of it). Two
in-flight messages with equal payloads on one link may so be swapped, which changes
nothing that is drawn but the arrows' slopes, and an arrow can never point back in
time: any unpaired send with the key was sent before the delivery.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrep.errors import InvalidArgument
from graphrep.plotstyle import colors as _colors
from graphrep.plotstyle import new_figure as _new_figure
from graphrep.plotstyle import save as _save
from graphrep.plotstyle import style as _style
from graphrep.sim.trace import Trace, payload_digest

__all__ = ["Interval", "Message", "fault_intervals", "fault_timeline", "pair_messages",
           "sequence_chart"]

_MS = 1e6
_NODE_EVENTS = ("start", "crash", "restart", "pause", "resume", "clock")


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the trace saw it: sent, then delivered or dropped."""

    src: str
    dst: str
    sent_ns: int
    end_ns: int
    delivered: bool
    reason: str | None  # why it was dropped: "loss", "partition", "down"
    label: str


@dataclass(frozen=True, slots=True)
class Interval:
    """A stretch of time something was faulty.

    ``kind`` is ``down``, ``paused`` or ``hold`` (``node`` is the node, or the source of
    the held link), ``partition`` (``node`` is None) or ``loss``/``duplicate``/
    ``reorder`` (``node`` None, ``note`` the probability).
    """

    kind: str
    node: str | None
    start_ns: int
    end_ns: int
    note: str = ""


def _label(payload: Any) -> str:
    """A short name for a message: its ``type`` field, or its first item, or its type."""
    if isinstance(payload, Mapping):
        kind = payload.get("type")
        if isinstance(kind, str):
            return kind
    if isinstance(payload, tuple | list) and payload and isinstance(payload[0], str):
        return payload[0]
    return type(payload).__name__


def pair_messages(trace: Trace) -> list[Message]:
    """Every message of ``trace`` that arrived or was dropped, in the order it ended.

    See the module docstring for how sends are paired with deliveries. Messages still in
    flight when the trace ends are left out.
    """
    memo: dict[int, str] = {}  # payloads are values and the trace keeps them alive

    def key(src: str, dst: str, payload: Any) -> tuple[str, str, str]:
        digest = memo.get(id(payload))
        if digest is None:
            digest = memo[id(payload)] = payload_digest(payload)
        return src, dst, digest

    unpaired: dict[tuple[str, str, str], deque[tuple[int, str]]] = {}
    out: list[Message] = []
    for t, kind, src, dst, payload, note in trace.records:
        if kind == "send":
            unpaired.setdefault(key(src, dst, payload), deque()).append((t, _label(payload)))
        elif kind == "duplicate":
            queue = unpaired.get(key(src, dst, payload))
            if queue:
                queue.append(queue[-1])
        elif kind in ("deliver", "drop"):
            queue = unpaired.get(key(src, dst, payload))
            if not queue:
                continue  # sent before the trace began: nothing to draw it from
            sent, label = queue.pop() if note == "loss" else queue.popleft()
            out.append(Message(src, dst, sent, t, kind == "deliver",
                               None if kind == "deliver" else str(note), label))
    return out


def _groups_text(note: Any) -> str:
    if isinstance(note, list) and note and note[0] == "one-way" and len(note) == 3:
        return f"{' '.join(note[1])} -> {' '.join(note[2])}"
    if isinstance(note, list) and len(note) == 2 and note[0] == "groups":
        return " | ".join(" ".join(g) for g in note[1])
    return str(note)


def fault_intervals(trace: Trace, end_ns: int | None = None) -> list[Interval]:
    """The trace's faults as intervals, sorted by (start, kind, node).

    An interval still open when the trace ends runs to ``end_ns`` (default: the last
    record's time). Loss, duplication and reordering come from the engine's ``network``
    records (one per change of the probabilities), so a probability set in the
    ``NetworkConfig`` itself, before any change, does not show.
    """
    records = trace.records
    end = end_ns if end_ns is not None else (records[-1][0] if records else 0)
    out: list[Interval] = []
    down: dict[str, int] = {}
    paused: dict[str, int] = {}
    holds: dict[tuple[str, str], int] = {}
    partitions: list[tuple[int, str]] = []
    probs = {"loss": (0.0, 0), "duplicate": (0.0, 0), "reorder": (0.0, 0)}
    for t, kind, src, dst, _payload, note in records:
        if kind == "crash":
            if src in paused:
                out.append(Interval("paused", src, paused.pop(src), t))
            down[src] = t
        elif kind == "restart" and src in down:
            out.append(Interval("down", src, down.pop(src), t))
        elif kind == "pause":
            paused[src] = t
        elif kind == "resume" and src in paused:
            out.append(Interval("paused", src, paused.pop(src), t))
        elif kind == "hold":
            holds.setdefault((src, dst), t)
        elif kind == "release" and (src, dst) in holds:
            out.append(Interval("hold", src, holds.pop((src, dst)), t, f"-> {dst}"))
        elif kind == "partition":
            partitions.append((t, _groups_text(note)))
        elif kind == "heal":
            out += [Interval("partition", None, s, t, text) for s, text in partitions]
            partitions.clear()
        elif kind == "network" and isinstance(note, list) and len(note) == 3:
            for name, p in zip(("loss", "duplicate", "reorder"), note, strict=True):
                old, since = probs[name]
                if p != old:
                    if old:
                        out.append(Interval(name, None, since, t, f"p={old:g}"))
                    probs[name] = (p, t)
    out += [Interval("down", n, s, end) for n, s in down.items()]
    out += [Interval("paused", n, s, end) for n, s in paused.items()]
    out += [Interval("hold", a, s, end, f"-> {b}") for (a, b), s in holds.items()]
    out += [Interval("partition", None, s, end, text) for s, text in partitions]
    out += [Interval(name, None, since, end, f"p={p:g}") for name, (p, since) in probs.items()
            if p]
    out.sort(key=lambda i: (i.start_ns, i.kind, i.node or "", i.end_ns))
    return out


def _styled(draw: Callable[..., Path]) -> Callable[..., Path]:
    """Draw and save under the project's plot style (:mod:`graphrep.plotstyle`)."""

    @functools.wraps(draw)
    def styled(*args: Any, **kwargs: Any) -> Path:
        with _style():
            return draw(*args, **kwargs)

    return styled


def _check_nodes(nodes: Sequence[str]) -> list[str]:
    names = list(nodes)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise InvalidArgument(f"nodes must be distinct node names, at least one, got {nodes!r}")
    return names


@_styled
def sequence_chart(trace: Trace, nodes: Sequence[str], path: str | Path, *,
                   start_ns: int = 0, end_ns: int | None = None,
                   max_messages: int | None = 400, labels: bool = True,
                   title: str | None = None) -> Path:
    """Draw a message sequence chart of ``trace`` to ``path``; returns the path.

    One column per name in ``nodes`` (messages to or from other nodes are left out);
    time flows down, in ms. Messages sent in ``[start_ns, end_ns]`` are drawn, at most
    ``max_messages`` of them (the earliest sent; None for all): a chart of thousands of
    arrows is unreadable, so draw a window of a long run. Delivered messages are arrows
    (gid ``deliver-<i>``) coloured by message type; dropped ones are dashed red lines
    ending in an ``x`` (gid ``drop-<i>``): on the destination's lifeline when dropped on
    arrival, two fifths of the way across when lost at the send. Lifelines turn red
    dotted while a node is down and orange while paused; crashes, restarts, pauses and
    resumes are markers (gids ``crash-<i>``...). Message types are written on the
    arrows when ``labels`` and at most 150 messages are drawn.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    names = _check_nodes(nodes)
    col = {n: i for i, n in enumerate(names)}
    stop = end_ns if end_ns is not None else (trace.records[-1][0] if trace.records else 0)
    if max_messages is not None and max_messages < 0:
        raise InvalidArgument(f"max_messages must be >= 0 or None, got {max_messages!r}")
    shown = sorted((m for m in pair_messages(trace)
                    if m.src in col and m.dst in col and start_ns <= m.sent_ns <= stop),
                   key=lambda m: (m.sent_ns, m.end_ns))
    total = len(shown)
    if max_messages is not None:
        shown = shown[:max_messages]
    last = max([stop if end_ns is not None else 0, *(m.end_ns for m in shown)])
    if shown and end_ns is None:
        stop = last
    t0, t1 = start_ns / _MS, max(stop, start_ns + 1) / _MS

    fig = _new_figure(max(5.0, 1.5 * len(names) + 1.5),
                      min(80.0, max(4.0, 2.0 + 0.12 * len(shown))))
    ax = fig.add_subplot()
    colors = _colors(m.label for m in shown)

    # lifelines, then their faulty stretches, then point events
    for n in names:
        ax.add_line(Line2D([col[n], col[n]], [t0, t1], color="0.6", lw=1, zorder=1))
    for i, iv in enumerate(fault_intervals(trace, stop)):
        if iv.kind not in ("down", "paused") or iv.node not in col:
            continue
        a, b = max(iv.start_ns, start_ns) / _MS, min(iv.end_ns, stop) / _MS
        if b < a:
            continue
        style = ("tab:red", ":") if iv.kind == "down" else ("tab:orange", "-")
        ax.add_line(Line2D([col[iv.node], col[iv.node]], [a, b], color=style[0],
                           ls=style[1], lw=3, zorder=2, gid=f"{iv.kind}-{i}"))
    markers = {"crash": ("X", "tab:red"), "restart": ("^", "tab:green"),
               "pause": ("s", "tab:orange"), "resume": ("o", "tab:orange")}
    counts: dict[str, int] = {}
    for t, kind, src, _dst, _p, _note in trace.records:
        if kind in markers and src in col and start_ns <= t <= stop:
            i = counts[kind] = counts.get(kind, -1) + 1
            marker, color = markers[kind]
            ax.add_line(Line2D([col[src]], [t / _MS], marker=marker, color=color, ms=9,
                               ls="none", zorder=5, gid=f"{kind}-{i}"))

    write = labels and len(shown) <= 150
    for i, m in enumerate(shown):
        x0, y0, y1 = col[m.src], m.sent_ns / _MS, m.end_ns / _MS
        x1 = col[m.dst]
        color = colors[m.label]
        if m.delivered:
            ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>",
                                         mutation_scale=9, lw=0.8, color=color, zorder=3,
                                         shrinkA=0, shrinkB=0, gid=f"deliver-{i}"))
        else:
            if m.reason == "loss":
                x1 = x0 + 0.4 * (x1 - x0)
            ax.add_line(Line2D([x0, x1], [y0, y1], color="tab:red", ls="--", lw=0.8,
                               marker="x", markevery=[1], ms=7, zorder=3, gid=f"drop-{i}"))
        if write:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, m.label, fontsize=6, color=color,
                    ha="center", va="bottom", zorder=4)

    ax.set_xticks(range(len(names)), names)
    ax.xaxis.tick_top()
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(max(t1, last / _MS), t0)  # time flows down
    ax.set_ylabel("virtual time (ms)")
    for side in ("right", "bottom"):
        ax.spines[side].set_visible(False)
    head = title or "messages"
    if len(shown) < total:
        head += f" (first {len(shown)} of {total} in the window)"
    ax.set_title(head, fontsize=10)
    if colors:
        ax.legend(handles=[Line2D([], [], color=c, label=lab) for lab, c in colors.items()],
                  loc="lower right", fontsize=7, frameon=False)
    return _save(fig, path)


@_styled
def fault_timeline(trace: Trace, nodes: Sequence[str], path: str | Path, *,
                   end_ns: int | None = None, title: str | None = None) -> Path:
    """Draw the faults of ``trace`` on a time line to ``path``; returns the path.

    One row per name in ``nodes``: down intervals as red bars (gid ``down-<i>``), paused
    ones orange (``paused-<i>``), held links as purple bars on the source's row
    (``hold-<i>``), restarts as green triangles, and a tick for every message dropped on
    its way to the node. Partitions are grey spans over every row (``partition-<i>``,
    labelled with their sides; overlapping ones stack darker). A ``network`` row on top
    shows the periods of loss, duplication and reordering with their probabilities
    (``loss-<i>``, ``duplicate-<i>``, ``reorder-<i>``). Time runs right, in ms.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    names = _check_nodes(nodes)
    records = trace.records
    end = end_ns if end_ns is not None else (records[-1][0] if records else 0)
    row = {n: len(names) - 1 - i for i, n in enumerate(names)}  # first node on top
    net_row = len(names)
    fig = _new_figure(10.0, max(2.5, 0.45 * (len(names) + 1) + 1.3))
    ax = fig.add_subplot()
    bars = {"down": "tab:red", "paused": "tab:orange", "hold": "tab:purple"}
    net = {"loss": ("tab:red", 0.27), "duplicate": ("tab:blue", 0.0),
           "reorder": ("tab:green", -0.27)}
    for i, iv in enumerate(fault_intervals(trace, end)):
        a, w = iv.start_ns / _MS, max(iv.end_ns - iv.start_ns, 0) / _MS
        if iv.kind in bars and iv.node in row:
            h = 0.6 if iv.kind != "hold" else 0.25
            y = row[iv.node] - h / 2 - (0.3 if iv.kind == "hold" else 0.0)
            ax.add_patch(Rectangle((a, y), w, h, color=bars[iv.kind], alpha=0.8,
                                   zorder=2, gid=f"{iv.kind}-{i}"))
            if iv.note:
                ax.text(a, y, iv.note, fontsize=6, va="top", color=bars[iv.kind])
        elif iv.kind == "partition":
            ax.add_patch(Rectangle((a, -0.5), w, net_row + 1, color="0.5", alpha=0.15, lw=0,
                                   zorder=1, gid=f"partition-{i}"))
            ax.text(a, net_row + 0.45, iv.note, fontsize=6, va="top", color="0.3")
        elif iv.kind in net:
            color, dy = net[iv.kind]
            ax.add_patch(Rectangle((a, net_row + dy - 0.12), w, 0.24, color=color, alpha=0.6,
                                   zorder=2, gid=f"{iv.kind}-{i}"))
            ax.text(a + w / 2, net_row + dy, f"{iv.kind} {iv.note}", fontsize=6,
                    ha="center", va="center")
    restarts: dict[str, list[float]] = {}
    drops: dict[str, list[float]] = {}
    for t, kind, src, dst, _p, _note in records:
        if kind == "restart" and src in row:
            restarts.setdefault(src, []).append(t / _MS)
        elif kind == "drop" and dst in row:
            drops.setdefault(dst, []).append(t / _MS)
    for n in names:
        if n in restarts:
            ax.add_line(Line2D(restarts[n], [row[n]] * len(restarts[n]), marker="^",
                               color="tab:green", ls="none", ms=7, zorder=4,
                               gid=f"restarts-{n}"))
        if n in drops:
            ax.add_line(Line2D(drops[n], [row[n] + 0.38] * len(drops[n]), marker="|",
                               color="0.3", ls="none", ms=4, zorder=3, gid=f"drops-{n}"))
    ax.set_yticks([*row.values(), net_row], [*row.keys(), "network"])
    ax.set_ylim(-0.6, net_row + 0.6)
    ax.set_xlim(0, max(end, 1) / _MS)
    ax.set_xlabel("virtual time (ms)")
    ax.set_title(title or "faults", fontsize=10)
    return _save(fig, path)
