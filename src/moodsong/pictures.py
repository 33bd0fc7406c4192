"""See a piece: piano-roll pictures (PNG or SVG) drawn with matplotlib.

The layout follows the piano-roll figures of symbolic-music papers: time runs
left to right with bar numbers and beat grid lines, pitch runs bottom to top
with note names (C4 = MIDI 60) and shaded black-key rows, each note is a bar
coloured by velocity (or by track), and a dark mark at its left edge shows
where it is struck, so a re-struck note reads differently from a held one.

:func:`draw_pianoroll` returns the figure together with the geometry of every
drawn note cell (:class:`NoteCell`) and a data-to-pixel mapping, so callers and
tests can find each note in the saved image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import symusic

from .errors import MoodsongError
from .fileio import atomic_path

__all__ = ["NoteCell", "PianoRollPicture", "draw_pianoroll", "save_pianoroll", "pitch_name"]

_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_BLACK = {1, 3, 6, 8, 10}
BACKGROUND = "#ffffff"
BLACK_KEY_ROW = "#eef0f4"
ONSET_COLOR = "#111111"
VELOCITY_CMAP = "viridis"
TRACK_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI number: 60 -> ``"C4"``, 69 -> ``"A4"``."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclass(frozen=True)
class NoteCell:
    """One drawn note.

    Attributes
    ----------
    pitch : int
        MIDI pitch (row).
    start_q, end_q : float
        Onset and offset in quarter notes from the start (x extent).
    velocity : int
        MIDI velocity 1..127.
    track : int
        Index of the note's track in the score.
    color : tuple of float
        RGBA face colour the cell is drawn with.
    """

    pitch: int
    start_q: float
    end_q: float
    velocity: int
    track: int
    color: tuple[float, float, float, float]


@dataclass
class PianoRollPicture:
    """A drawn piano roll: the matplotlib figure and what was drawn where.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    ax : matplotlib.axes.Axes
    cells : list of NoteCell
    width_px, height_px : int
        Size of the saved raster image in pixels.
    """

    figure: object
    ax: object
    cells: list[NoteCell] = field(default_factory=list)
    width_px: int = 0
    height_px: int = 0
    _laid_out: bool = field(default=False, repr=False)

    def to_pixel(self, quarter: float, pitch: float) -> tuple[float, float]:
        """Image coordinates ``(column, row)`` of a point in data space (row 0 at the top).

        ``pitch`` is the row centre when given as an integer MIDI pitch.
        """
        if not self._laid_out:  # the transform is final only once the figure has been drawn
            self.figure.canvas.draw()
            self._laid_out = True
        x, y = self.ax.transData.transform((quarter, pitch))
        return float(x), float(self.height_px - y)

    def save(self, path: str | os.PathLike) -> Path:
        """Write PNG or SVG (by suffix) atomically at exactly ``width_px`` x ``height_px``."""
        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in ("png", "svg"):
            raise MoodsongError(f"{path}: picture format must be .png or .svg")
        with atomic_path(path) as tmp:
            self.figure.savefig(tmp, format=fmt, dpi=self.figure.dpi, facecolor=BACKGROUND)
        return path


def _cells(score: symusic.Score, color_by: str) -> list[tuple]:
    tpq = score.ticks_per_quarter
    out = []
    for k, track in enumerate(score.tracks):
        if track.is_drum or len(track.notes) == 0:
            continue
        a = track.notes.numpy()
        for t, d, p, v in zip(a["time"].tolist(), a["duration"].tolist(), a["pitch"].tolist(), a["velocity"].tolist()):
            out.append((int(p), t / tpq, (t + max(d, 1)) / tpq, int(v), k))
    return out


def draw_pianoroll(
    score: symusic.Score | str | os.PathLike,
    *,
    title: str | None = None,
    color_by: str = "velocity",
    width_px: int = 1600,
    height_px: int = 700,
    dpi: int = 100,
) -> PianoRollPicture:
    """Draw a piano roll of a piece.

    Parameters
    ----------
    score : symusic.Score or path to a MIDI file
    title : str, optional
        Figure title (default: the number of notes and bars).
    color_by : {"velocity", "track"}
        Colour notes by MIDI velocity (viridis, with a colour bar) or by track.
    width_px, height_px : int
        Size of the raster image in pixels.
    dpi : int
        Pixels per inch (sets font size relative to the image).

    Returns
    -------
    PianoRollPicture
    """
    import matplotlib

    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from .audio import load_score
    from .chords import segments

    if color_by not in ("velocity", "track"):
        raise MoodsongError("color_by must be 'velocity' or 'track'")
    if width_px < 200 or height_px < 150:
        raise MoodsongError("picture must be at least 200 x 150 pixels")
    score = load_score(score)
    raw = _cells(score, color_by)
    if not raw:
        raise MoodsongError("nothing to draw: the piece has no pitched notes")

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor=BACKGROUND)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor(BACKGROUND)

    pitches = np.array([c[0] for c in raw])
    lo, hi = int(pitches.min()) - 1, int(pitches.max()) + 1
    if hi - lo < 12:  # show at least an octave so the names give orientation
        pad = (12 - (hi - lo)) // 2
        lo, hi = lo - pad, hi + (12 - (hi - lo) - pad)
    bars = segments(score, "bar")
    end_q = max(max(c[2] for c in raw), bars[-1][1] if bars else 0.0)

    # Rows: shade black keys, as on a keyboard.
    for p in range(lo, hi + 1):
        if p % 12 in _BLACK:
            ax.axhspan(p - 0.5, p + 0.5, color=BLACK_KEY_ROW, zorder=0, linewidth=0)
    # Grid: beats thin, bars strong.
    for s, e, bar in segments(score, "beat"):
        ax.axvline(s, color="#d9d9d9", linewidth=0.5, zorder=1)
    for s, e, bar in bars:
        ax.axvline(s, color="#7f7f7f", linewidth=1.0, zorder=1)

    if color_by == "velocity":
        cmap = matplotlib.colormaps[VELOCITY_CMAP]
        colors = [tuple(float(x) for x in cmap(v / 127.0)) for _, _, _, v, _ in raw]
    else:
        from matplotlib.colors import to_rgba

        colors = [to_rgba(TRACK_COLORS[k % len(TRACK_COLORS)]) for *_, k in raw]
    cells = [NoteCell(p, s, e, v, k, c) for (p, s, e, v, k), c in zip(raw, colors)]

    h = 0.8  # row fraction covered by a note, so neighbouring pitches stay apart
    bodies = [Rectangle((c.start_q, c.pitch - h / 2), c.end_q - c.start_q, h) for c in cells]
    ax.add_collection(PatchCollection(bodies, facecolors=colors, edgecolors="none", zorder=2))
    # Onset marks: a fixed fraction of a quarter, never more than a third of the note.
    marks = [Rectangle((c.start_q, c.pitch - h / 2), min(0.12, (c.end_q - c.start_q) / 3), h) for c in cells]
    ax.add_collection(PatchCollection(marks, facecolors=ONSET_COLOR, edgecolors="none", zorder=3))

    ax.set_xlim(0, end_q)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    # y: every pitch named when the range is small, else the Cs (with E and A as minor ticks).
    if hi - lo <= 30:
        ticks = list(range(lo, hi + 1))
    else:
        ticks = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ax.set_yticks(ticks, [pitch_name(p) for p in ticks])
    ax.set_ylabel("pitch")
    # x: bar numbers at bar starts (thinned to ~32 labels on long pieces).
    step = max(1, int(np.ceil(len(bars) / 32)))
    shown = [b for i, b in enumerate(bars) if i % step == 0]
    ax.set_xticks([b[0] for b in shown], [str(b[2]) for b in shown])
    ax.set_xlabel("bar (grid: beats)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title is None:
        title = f"{len(cells)} notes, {len(bars)} bars"
    ax.set_title(title)
    if color_by == "velocity":
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        sm = ScalarMappable(Normalize(0, 127), matplotlib.colormaps[VELOCITY_CMAP])
        fig.colorbar(sm, ax=ax, label="velocity", fraction=0.03, pad=0.01)
    else:
        from matplotlib.patches import Patch

        used = sorted({c.track for c in cells})
        handles = [
            Patch(color=TRACK_COLORS[k % len(TRACK_COLORS)], label=score.tracks[k].name or f"track {k + 1}")
            for k in used
        ]
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    fig.tight_layout()
    return PianoRollPicture(fig, ax, cells, width_px, height_px)


def save_pianoroll(score: symusic.Score | str | os.PathLike, path: str | os.PathLike, **kwargs) -> Path:
    """Draw and save a piano roll (``.png`` or ``.svg``). Keyword arguments go to :func:`draw_pianoroll`."""
    picture = draw_pianoroll(score, **kwargs)
    try:
        return picture.save(path)
    finally:
        picture.figure.clear()
