"""Piano-roll pictures: the image decodes at the asked size and shows exactly the piece's notes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import symusic
from click.testing import CliRunner
from PIL import Image

from moodsong.cli import main
from moodsong.errors import MoodsongError
from moodsong.render.pictures import BLACK_KEY_ROW, draw_pianoroll, pitch_name, save_pianoroll

NOTES = [(0, 2, 60, 30), (1, 1, 64, 70), (2, 2, 67, 110), (4, 1, 72, 127), (4, 3, 55, 50), (5, 1, 64, 90)]


def make_score(tracks, tpq=480, qpm=100):
    s = symusic.Score(tpq)
    s.tempos.append(symusic.Tempo(0, qpm))
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    for name, notes in tracks:
        t = symusic.Track(name, 0, False)
        for start, dur, pitch, vel in notes:
            t.notes.append(symusic.Note(int(start * tpq), int(dur * tpq), pitch, vel))
        s.tracks.append(t)
    return s


def rgb(color) -> np.ndarray:
    return np.round(np.asarray(color[:3]) * 255)


def test_pitch_names():
    assert [pitch_name(p) for p in (21, 60, 61, 69, 108)] == ["A0", "C4", "C#4", "A4", "C8"]


def test_png_size_and_drawn_cells_match_the_notes(tmp_path):
    picture = draw_pianoroll(make_score([("piano", NOTES)]), title="test piece", width_px=900, height_px=450)
    path = picture.save(tmp_path / "roll.png")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape == (450, 900, 3)

    # One cell per note, at the note's pitch and time.
    drawn = sorted((c.pitch, c.start_q, c.end_q, c.velocity) for c in picture.cells)
    assert drawn == sorted((p, s, s + d, v) for s, d, p, v in NOTES)
    for cell in picture.cells:
        # The body of the note has its velocity colour ...
        col, row = picture.to_pixel(cell.start_q + 0.7 * (cell.end_q - cell.start_q), cell.pitch)
        assert np.abs(img[int(row), int(col)] - rgb(cell.color)).max() <= 2, cell
        # ... and its onset is marked dark, so struck and held notes differ.
        col, row = picture.to_pixel(cell.start_q + 0.02, cell.pitch)
        assert img[int(row), int(col)].max() < 40, cell
    # Louder notes are drawn in a different colour from softer ones.
    assert len({c.color for c in picture.cells}) == len({v for *_, v in NOTES})

    # Where no note sounds, the row shows its background (white, or grey for black keys).
    checked = 0
    for pitch in range(56, 72):
        for q in np.arange(0.125, 7, 0.5):
            if any(p == pitch and s - 0.3 <= q <= s + d + 0.3 for s, d, p, v in NOTES):
                continue
            col, row = picture.to_pixel(float(q), pitch)
            px = img[int(row), int(col)]
            # Grid lines are thin grey; sample beside them (q is off the beat grid).
            black_key = pitch % 12 in {1, 3, 6, 8, 10}
            expected = rgb(matplotlib_rgba(BLACK_KEY_ROW)) if black_key else np.array([255, 255, 255])
            assert np.abs(px - expected).max() <= 3, (pitch, q, px)
            checked += 1
    assert checked > 150


def matplotlib_rgba(color):
    from matplotlib.colors import to_rgba

    return to_rgba(color)


def test_color_by_track_and_svg(tmp_path):
    score = make_score([("melody", NOTES[:3]), ("bass", [(0, 4, 36, 80), (4, 4, 43, 80)])])
    picture = draw_pianoroll(score, color_by="track", width_px=800, height_px=400)
    colors = {c.track: c.color for c in picture.cells}
    assert len(colors) == 2 and colors[0] != colors[1]
    path = save_pianoroll(score, tmp_path / "roll.svg", color_by="track", title="two tracks")
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert "two tracks" in path.read_text()


def test_errors(tmp_path):
    with pytest.raises(MoodsongError, match="no pitched notes"):
        draw_pianoroll(make_score([("empty", [])]))
    with pytest.raises(MoodsongError, match="png or .svg"):
        save_pianoroll(make_score([("p", NOTES)]), tmp_path / "roll.jpg")


def test_cli_plot(tmp_path):
    mid = tmp_path / "song.mid"
    make_score([("piano", NOTES)]).dump_midi(str(mid))
    result = CliRunner().invoke(main, ["plot", str(mid), "--width", "640", "--height", "320"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "song.png").size == (640, 320)


def test_shipped_viridis_equals_matplotlib():
    import matplotlib

    from moodsong.render.pictures import _viridis

    want = np.round(np.array([matplotlib.colormaps["viridis"](i)[:3] for i in range(256)]) * 255)
    assert np.array_equal(_viridis(), want.astype(np.uint8))


def test_png_is_drawn_without_matplotlib(tmp_path):
    from test_lazy_imports import loaded_after

    here, out = str(Path(__file__).parent), str(tmp_path / "r.png")
    code = (f"import sys; sys.path.insert(0, {here!r})\nfrom test_pictures import make_score, NOTES\n"
            "from moodsong.render.pictures import save_pianoroll\n"
            f"save_pianoroll(make_score([('piano', NOTES)]), {out!r})")
    assert "matplotlib" not in loaded_after(code)
    assert Image.open(tmp_path / "r.png").size == (1600, 700)
