"""See a piece: piano-roll pictures (PNG drawn with Pillow, SVG with matplotlib).

The layout follows the piano-roll figures of symbolic-music papers: time runs
left to right with bar numbers and beat grid lines, pitch runs bottom to top
with note names (C4 = MIDI 60) and shaded black-key rows, each note is a bar
coloured by velocity (or by track), and a dark mark at its left edge shows
where it is struck, so a re-struck note reads differently from a held one.

:func:`draw_pianoroll` returns the geometry of every drawn note cell
(:class:`NoteCell`) and a data-to-pixel mapping, so callers and tests can find
each note in the saved image.

PNG pictures are drawn with Pillow in the layout matplotlib gave them (same
fonts, colours, ticks, colour bar and legend): importing matplotlib and drawing
through it took 1.2 s of every compose on the 2-core machine (its import alone
0.5-1 s), Pillow takes ~0.1 s (``python bench/latency.py``). SVG, asked for by
name, still goes through matplotlib (``PianoRollPicture.figure``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import symusic

from moodsong.errors import MoodsongError
from moodsong.fileio import atomic_path

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


def _rgba(color: str) -> tuple[float, float, float, float]:
    """``"#rrggbb"`` -> RGBA floats in 0..1 (what matplotlib's ``to_rgba`` gives)."""
    return tuple(int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)) + (1.0,)


@functools.lru_cache(maxsize=1)
def _viridis() -> np.ndarray:
    """matplotlib's viridis as 256 RGB rows, uint8 (``data/viridis_rgb.npy``; a test compares it)."""
    return np.load(Path(__file__).resolve().parents[1] / "data" / "viridis_rgb.npy")


def _velocity_color(v: int) -> tuple[float, float, float, float]:
    """viridis(v / 127) as matplotlib looks it up (256 entries, nearest below), RGBA floats."""
    i = min(int(v / 127.0 * 256), 255)
    return tuple(float(x) / 255 for x in _viridis()[i]) + (1.0,)


@dataclass
class PianoRollPicture:
    """A drawn piano roll: what was drawn where, ready to save as PNG or SVG.

    Attributes
    ----------
    cells : list of NoteCell
    width_px, height_px : int
        Size of the saved raster image in pixels.
    figure, ax : matplotlib Figure and Axes
        Built on first use (SVG output, or a caller that wants to draw more).
    """

    cells: list[NoteCell]
    width_px: int
    height_px: int
    _spec: dict = field(repr=False, default_factory=dict)
    _figure: object = field(default=None, repr=False)
    _ax: object = field(default=None, repr=False)

    def to_pixel(self, quarter: float, pitch: float) -> tuple[float, float]:
        """Image coordinates ``(column, row)`` of a point in data space (row 0 at the top) in the PNG.

        ``pitch`` is the row centre when given as an integer MIDI pitch.
        """
        L = self._spec["layout"]
        x = L["x0"] + (quarter - 0.0) / self._spec["end_q"] * (L["x1"] - L["x0"])
        y = L["y0"] + (self._spec["hi"] + 0.5 - pitch) / (self._spec["hi"] - self._spec["lo"] + 1) * (L["y1"] - L["y0"])
        return float(x), float(y)

    @property
    def figure(self):
        if self._figure is None:
            self._figure, self._ax = _matplotlib_figure(self)
        return self._figure

    @property
    def ax(self):
        _ = self.figure  # made on first use, with its axes
        return self._ax

    def save(self, path: str | os.PathLike) -> Path:
        """Write PNG or SVG (by suffix) atomically at exactly ``width_px`` x ``height_px``."""
        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in ("png", "svg"):
            raise MoodsongError(f"{path}: picture format must be .png or .svg")
        with atomic_path(path) as tmp:
            if fmt == "png":
                _pillow_image(self).save(tmp, format="PNG", dpi=(self._spec["dpi"],) * 2)
            else:
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
    from moodsong.representation.chords import segments
    from moodsong.representation.pianoroll import read_score

    if color_by not in ("velocity", "track"):
        raise MoodsongError("color_by must be 'velocity' or 'track'")
    if width_px < 200 or height_px < 150:
        raise MoodsongError("picture must be at least 200 x 150 pixels")
    score = read_score(score)
    raw = _cells(score, color_by)
    if not raw:
        raise MoodsongError("nothing to draw: the piece has no pitched notes")

    pitches = np.array([c[0] for c in raw])
    lo, hi = int(pitches.min()) - 1, int(pitches.max()) + 1
    if hi - lo < 12:  # show at least an octave so the names give orientation
        pad = (12 - (hi - lo)) // 2
        lo, hi = lo - pad, hi + (12 - (hi - lo) - pad)
    bars = segments(score, "bar")
    end_q = max(max(c[2] for c in raw), bars[-1][1] if bars else 0.0)

    if color_by == "velocity":
        colors = [_velocity_color(v) for _, _, _, v, _ in raw]
    else:
        colors = [_rgba(TRACK_COLORS[k % len(TRACK_COLORS)]) for *_, k in raw]
    cells = [NoteCell(p, s, e, v, k, c) for (p, s, e, v, k), c in zip(raw, colors)]

    # y: every pitch named when the range is small, else the Cs.
    yticks = list(range(lo, hi + 1)) if hi - lo <= 30 else [p for p in range(lo, hi + 1) if p % 12 == 0]
    # x: bar numbers at bar starts (thinned to ~32 labels on long pieces).
    step = max(1, int(np.ceil(len(bars) / 32)))
    shown = [b for i, b in enumerate(bars) if i % step == 0]
    tracks = sorted({c.track for c in cells})
    spec = dict(
        title=title if title is not None else f"{len(cells)} notes, {len(bars)} bars",
        color_by=color_by, dpi=dpi, lo=lo, hi=hi, end_q=end_q,
        beats=[s for s, _, _ in segments(score, "beat")], bars=[s for s, _, _ in bars],
        yticks=[(p, pitch_name(p)) for p in yticks], xticks=[(b[0], str(b[2])) for b in shown],
        legend=[(TRACK_COLORS[k % len(TRACK_COLORS)], score.tracks[k].name or f"track {k + 1}") for k in tracks],
    )
    picture = PianoRollPicture(cells, width_px, height_px, spec)
    spec["layout"] = _layout(picture)
    return picture


def save_pianoroll(score: symusic.Score | str | os.PathLike, path: str | os.PathLike, **kwargs) -> Path:
    """Draw and save a piano roll (``.png`` or ``.svg``). Keyword arguments go to :func:`draw_pianoroll`."""
    picture = draw_pianoroll(score, **kwargs)
    try:
        return picture.save(path)
    finally:
        if picture._figure is not None:
            picture._figure.clear()


# -- Pillow (PNG) ------------------------------------------------------------------------------------

_NOTE_HEIGHT = 0.8  # row fraction covered by a note, so neighbouring pitches stay apart
_ONSET_Q = 0.12  # onset mark width in quarters, never more than a third of the note


@functools.lru_cache(maxsize=16)
def _font(size_px: int):
    """DejaVu Sans (matplotlib's default font, from its installed files) at ``size_px``; Pillow's own if absent."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")  # finds the files without importing matplotlib
    for folder in (spec.submodule_search_locations or []) if spec else []:
        ttf = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if ttf.is_file():
            return ImageFont.truetype(str(ttf), size_px)
    return ImageFont.load_default(size_px)


def _text_size(text: str, size_px: int) -> tuple[int, int]:
    x0, y0, x1, y1 = _font(size_px).getbbox(text)
    return x1 - x0, y1 - y0


def _layout(picture: PianoRollPicture) -> dict:
    """Pixel boxes of the plot area (and colour bar), leaving room for the labels as ``tight_layout`` does."""
    spec, W, H = picture._spec, picture.width_px, picture.height_px
    pt = spec["dpi"] / 72.0  # pixels per point
    fs, ts = round(10 * pt), round(12 * pt)  # matplotlib's default font sizes: 10 pt, titles 12 pt
    tick, pad = 3.5 * pt, 3.5 * pt
    border = 1.08 * 10 * pt  # tight_layout's default padding: 1.08 font sizes
    label_h = _text_size("Ag", fs)[1]
    ytick_w = max(_text_size(t, fs)[0] for _, t in spec["yticks"]) if spec["yticks"] else 0
    x0 = border + label_h + 4 * pt + ytick_w + pad + tick
    y0 = border + _text_size("Ag", ts)[1] + 6 * pt
    y1 = H - (border + label_h + 4 * pt + label_h + pad + tick)
    x1 = W - border
    L = {"fs": fs, "ts": ts, "tick": tick, "pad": pad, "y0": y0, "y1": y1, "border": border}
    if spec["color_by"] == "velocity":
        # Colour bar: 3 % of the width beside the plot with its ticks and label, as fig.colorbar(fraction=0.03).
        cb_labels = 4 * pt + _text_size("120", fs)[0] + pad + tick + label_h
        cb_w = 0.03 * (x1 - x0)
        L["cb1"] = x1 - cb_labels
        L["cb0"] = L["cb1"] - cb_w
        x1 = L["cb0"] - 0.01 * W - 4 * pt
    L["x0"], L["x1"] = x0, x1
    return L


def _pillow_image(picture: PianoRollPicture):
    from PIL import Image, ImageDraw

    spec, L = picture._spec, picture._spec["layout"]
    W, H = picture.width_px, picture.height_px
    img = Image.new("RGB", (W, H), BACKGROUND)
    d = ImageDraw.Draw(img)
    lo, hi = spec["lo"], spec["hi"]
    x0, x1, y0, y1 = L["x0"], L["x1"], L["y0"], L["y1"]
    pt = spec["dpi"] / 72.0
    px = picture.to_pixel

    def box(q0, q1, p0, p1, fill):  # data rectangle [q0, q1] x [p0, p1] -> filled pixels, as Agg snaps them
        a, b = px(q0, p1)
        c, e = px(q1, p0)
        d.rectangle([round(a), round(b), max(round(a), round(c) - 1), max(round(b), round(e) - 1)], fill=fill)

    for p in range(lo, hi + 1):  # rows: shade black keys, as on a keyboard
        if p % 12 in _BLACK:
            box(0, spec["end_q"], p - 0.5, p + 0.5, BLACK_KEY_ROW)
    for q in spec["beats"]:  # grid: beats thin, bars strong
        x = round(px(q, lo)[0])
        d.line([(x, round(y0)), (x, round(y1))], fill="#d9d9d9", width=1)
    for q in spec["bars"]:
        x = round(px(q, lo)[0])
        d.line([(x, round(y0)), (x, round(y1))], fill="#7f7f7f", width=max(1, round(pt)))
    h = _NOTE_HEIGHT / 2
    for c in picture.cells:
        color = tuple(round(v * 255) for v in c.color[:3])
        box(c.start_q, c.end_q, c.pitch - h, c.pitch + h, color)
    for c in picture.cells:
        box(c.start_q, c.start_q + min(_ONSET_Q, (c.end_q - c.start_q) / 3), c.pitch - h, c.pitch + h, ONSET_COLOR)

    # Axes: left and bottom spines, outward ticks, labels.
    black, lw = "#000000", max(1, round(0.8 * pt))
    d.line([(round(x0), round(y0)), (round(x0), round(y1))], fill=black, width=lw)
    d.line([(round(x0), round(y1)), (round(x1), round(y1))], fill=black, width=lw)
    fs, tick, pad = L["fs"], L["tick"], L["pad"]
    font = _font(fs)
    for p, name in spec["yticks"]:
        y = px(0, p)[1]
        d.line([(x0 - tick, y), (x0, y)], fill=black, width=lw)
        d.text((x0 - tick - pad, y), name, fill=black, font=font, anchor="rm")
    for q, name in spec["xticks"]:
        x = px(q, lo)[0]
        d.line([(x, y1), (x, y1 + tick)], fill=black, width=lw)
        d.text((x, y1 + tick + pad), name, fill=black, font=font, anchor="mt")
    d.text(((x0 + x1) / 2, H - L["border"]), "bar (grid: beats)", fill=black, font=font, anchor="md")
    _vertical_text(img, "pitch", (L["border"], (y0 + y1) / 2), font)
    d.text(((x0 + x1) / 2, y0 - 6 * pt), spec["title"], fill=black, font=_font(L["ts"]), anchor="md")

    if spec["color_by"] == "velocity":
        cb0, cb1 = round(L["cb0"]), round(L["cb1"])
        top, bottom = round(y0), round(y1)
        rows = np.arange(top, bottom)
        idx = np.clip(((bottom - rows - 0.5) / (bottom - top) * 256).astype(int), 0, 255)
        strip = _viridis()[idx][:, None, :].repeat(cb1 - cb0, axis=1)
        img.paste(Image.fromarray(np.ascontiguousarray(strip), "RGB"), (cb0, top))
        d.rectangle([cb0, top, cb1, bottom], outline=black, width=lw)
        for v in range(0, 128, 20):
            y = bottom - v / 127 * (bottom - top)
            d.line([(cb1, y), (cb1 + tick, y)], fill=black, width=lw)
            d.text((cb1 + tick + pad, y), str(v), fill=black, font=font, anchor="lm")
        _vertical_text(img, "velocity", (W - L["border"] - _text_size("Ag", fs)[1], (y0 + y1) / 2), font)
    else:  # legend box, upper right
        rows = spec["legend"]
        line_h = _text_size("Ag", round(fs * 0.833))[1] + 6 * pt
        small = _font(round(fs * 0.833))
        wbox = max(_text_size(n, round(fs * 0.833))[0] for _, n in rows) + 28 * pt
        bx1, by0 = x1 - 6 * pt, y0 + 6 * pt
        bx0, by1 = bx1 - wbox, by0 + line_h * len(rows) + 4 * pt
        d.rounded_rectangle([bx0, by0, bx1, by1], radius=round(2 * pt), fill="#ffffff", outline="#cccccc")
        for i, (color, name) in enumerate(rows):
            cy = by0 + 2 * pt + line_h * (i + 0.5)
            d.rectangle([bx0 + 4 * pt, cy - 3.5 * pt, bx0 + 18 * pt, cy + 3.5 * pt], fill=color)
            d.text((bx0 + 22 * pt, cy), name, fill=black, font=small, anchor="lm")
    return img


def _vertical_text(img, text: str, left_mid: tuple[float, float], font) -> None:
    """Text rotated 90 degrees (reading upwards) with its left edge at ``left_mid``'s x, centred on its y."""
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = font.getbbox(text)
    tile = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 0)
    ImageDraw.Draw(tile).text((1 - x0, 1 - y0), text, fill=255, font=font)
    tile = tile.rotate(90, expand=True)
    x, y = round(left_mid[0]), round(left_mid[1] - tile.height / 2)
    img.paste((0, 0, 0), (x, y), tile)


# -- matplotlib (SVG) --------------------------------------------------------------------------------


def _matplotlib_figure(picture: PianoRollPicture):
    """The same picture as a matplotlib Figure and Axes (object API on an Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    spec, cells = picture._spec, picture.cells
    dpi, lo, hi = spec["dpi"], spec["lo"], spec["hi"]
    fig = Figure(figsize=(picture.width_px / dpi, picture.height_px / dpi), dpi=dpi, facecolor=BACKGROUND)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor(BACKGROUND)
    for p in range(lo, hi + 1):
        if p % 12 in _BLACK:
            ax.axhspan(p - 0.5, p + 0.5, color=BLACK_KEY_ROW, zorder=0, linewidth=0)
    for q in spec["beats"]:
        ax.axvline(q, color="#d9d9d9", linewidth=0.5, zorder=1)
    for q in spec["bars"]:
        ax.axvline(q, color="#7f7f7f", linewidth=1.0, zorder=1)
    h = _NOTE_HEIGHT
    colors = [c.color for c in cells]
    bodies = [Rectangle((c.start_q, c.pitch - h / 2), c.end_q - c.start_q, h) for c in cells]
    ax.add_collection(PatchCollection(bodies, facecolors=colors, edgecolors="none", zorder=2))
    marks = [Rectangle((c.start_q, c.pitch - h / 2), min(_ONSET_Q, (c.end_q - c.start_q) / 3), h) for c in cells]
    ax.add_collection(PatchCollection(marks, facecolors=ONSET_COLOR, edgecolors="none", zorder=3))
    ax.set_xlim(0, spec["end_q"])
    ax.set_ylim(lo - 0.5, hi + 0.5)
    ax.set_yticks([p for p, _ in spec["yticks"]], [n for _, n in spec["yticks"]])
    ax.set_ylabel("pitch")
    ax.set_xticks([q for q, _ in spec["xticks"]], [n for _, n in spec["xticks"]])
    ax.set_xlabel("bar (grid: beats)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(spec["title"])
    if spec["color_by"] == "velocity":
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import ListedColormap, Normalize

        sm = ScalarMappable(Normalize(0, 127), ListedColormap(_viridis() / 255.0))
        fig.colorbar(sm, ax=ax, label="velocity", fraction=0.03, pad=0.01)
    else:
        handles = [Patch(color=color, label=name) for color, name in spec["legend"]]
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    fig.tight_layout()
    return fig, ax
