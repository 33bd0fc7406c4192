"""POP909 songs on a sixteenth-note grid: melody, accompaniment, chords, key.

POP909 (Wang et al., ISMIR 2020; MIT) has 909 Chinese pop songs arranged for piano by
musicians and played over the original recordings, so note times are performed seconds.
Each song folder ``NNN/`` holds ``NNN.mid`` (tracks ``MELODY``, ``BRIDGE``, ``PIANO``),
``beat_midi.txt`` (one row per beat: time in seconds, a half-bar mark, a downbeat mark),
``chord_midi.txt`` (start s, end s, Harte-like label such as ``F#:min7`` or ``C:maj/3``)
and ``key_audio.txt`` (start s, end s, ``Gb:maj``).

:func:`load_song` maps every time through the beat annotations (linear interpolation
between annotated beats) to beats, then to sixteenth-note steps (4 per beat), and shifts
the song so that step 0 is its first annotated downbeat. The odd irregular bar (a performed
2- or 6-beat bar) is cut out so that every bar on the grid is a 4/4 bar; songs where fewer
than 90 % of the bars have four beats are refused.

The song-level split is fixed by the song number (:func:`split_of`): ``NNN % 10 == 0`` is
held out for testing and ``NNN % 10 == 5`` for validation; nothing is ever trained on or
selected by the test songs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moodsong.errors import MoodsongError

__all__ = ["Chord", "PopSong", "QUALITIES", "parse_chord_label", "split_of", "song_folders", "load_song",
           "STEPS_PER_BEAT", "STEPS_PER_BAR"]

STEPS_PER_BEAT = 4
STEPS_PER_BAR = 16  # POP909 is 4/4 throughout (songs that are not are refused)

#: Chord qualities kept, as the lead-sheet suffixes :mod:`moodsong.representation.chords` recognises, with
#: their intervals above the root. POP909 labels are folded onto these (``maj6`` -> major,
#: ``sus4(b7)`` -> sus4, ``minmaj7`` -> minor, ``9`` -> 7, inversions keep their root).
QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "o": (0, 3, 6),
    "+": (0, 4, 8),
    "ø7": (0, 3, 6, 10),
    "o7": (0, 3, 6, 9),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
}
_HARTE = {
    "maj": "", "min": "m", "7": "7", "maj7": "maj7", "min7": "m7", "dim": "o", "aug": "+", "hdim7": "ø7",
    "dim7": "o7", "sus4": "sus4", "sus2": "sus2", "maj6": "", "min6": "m", "sus4(b7)": "sus4", "minmaj7": "m",
    "9": "7", "maj9": "maj7", "min9": "m7", "add9": "", "min(9)": "m", "maj(9)": "",
}
_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _pitch_class(name: str) -> int:
    pc = _PC[name[0].upper()]
    for ch in name[1:]:
        pc += 1 if ch == "#" else -1 if ch == "b" else 0
    return pc % 12


def parse_chord_label(label: str) -> tuple[int, str] | None:
    """``"F#:min7/b7"`` -> ``(6, "m7")``; None for ``"N"`` or a quality outside :data:`QUALITIES`."""
    label = label.strip()
    if label in ("N", "X", "") or ":" not in label:
        return None
    root, quality = label.split(":", 1)
    quality = quality.split("/", 1)[0]
    suffix = _HARTE.get(quality)
    if suffix is None:
        return None
    return _pitch_class(root), suffix


@dataclass(frozen=True)
class Chord:
    """One chord span on the step grid.

    Attributes
    ----------
    start, end : int
        Span in sixteenth-note steps from the song's first downbeat.
    root : int
        Root pitch class (0 = C).
    quality : str
        Lead-sheet suffix, a key of :data:`QUALITIES`.
    """

    start: int
    end: int
    root: int
    quality: str

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in QUALITIES[self.quality])


@dataclass
class PopSong:
    """One POP909 song on the sixteenth-note grid.

    Attributes
    ----------
    song_id : str
        The folder name, e.g. ``"001"``.
    melody, bridge, piano : ndarray of int, shape (n, 4)
        Notes as ``(start_step, duration_steps, pitch, velocity)``, sorted by start then pitch.
    chords : list of Chord
        Annotated chords ("no chord" spans left out).
    tonic : int
        Tonic pitch class of the song's main key (the longest annotated key).
    mode : str
        ``"major"`` or ``"minor"``.
    qpm : float
        Median tempo in quarter notes per minute.
    num_bars : int
        Bars from the first downbeat to the last note.
    """

    song_id: str
    melody: np.ndarray
    bridge: np.ndarray
    piano: np.ndarray
    chords: list[Chord] = field(default_factory=list)
    tonic: int = 0
    mode: str = "major"
    qpm: float = 120.0
    num_bars: int = 0


def split_of(song_id: str) -> str:
    """``"train"``, ``"valid"`` or ``"test"`` for a song folder name such as ``"010"``."""
    n = int(song_id) % 10
    return "test" if n == 0 else "valid" if n == 5 else "train"


def song_folders(root: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The song folders under a POP909 root (``NNN/NNN.mid`` present), optionally of one split."""
    root = Path(root)
    if not root.is_dir():
        raise MoodsongError(f"{root}: not a folder (expected POP909's song folders NNN/)")
    out = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and (p / f"{p.name}.mid").exists())
    if split is not None:
        if split not in ("train", "valid", "test"):
            raise MoodsongError(f"unknown split {split!r}; use train, valid or test")
        out = [p for p in out if split_of(p.name) == split]
    return out


def _read_rows(path: Path) -> list[list[str]]:
    return [line.split() if "\t" not in line else line.rstrip("\n").split("\t")
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_song(folder: str | os.PathLike) -> PopSong:
    """Read one POP909 song folder onto the sixteenth-note grid (see the module docstring).

    Raises
    ------
    MoodsongError
        If a file is missing or unreadable, or the song is not in 4/4.
    """
    import symusic

    folder = Path(folder)
    sid = folder.name
    try:
        beats = np.array([[float(x) for x in r[:3]] for r in _read_rows(folder / "beat_midi.txt")])
        chord_rows = _read_rows(folder / "chord_midi.txt")
        key_rows = _read_rows(folder / "key_audio.txt")
        score = symusic.Score(str(folder / f"{sid}.mid"), ttype="second")
    except (OSError, ValueError, RuntimeError) as e:
        raise MoodsongError(f"{folder}: not a readable POP909 song ({e})") from None
    times = beats[:, 0]
    down = np.flatnonzero(beats[:, 2] > 0.5)
    gaps = np.diff(down)
    if len(times) < 8 or len(gaps) < 2 or np.mean(gaps == 4) < 0.9:
        raise MoodsongError(f"{folder}: not in 4/4 (fewer than 90% of its downbeats are four beats apart)")
    # Grid beat of every annotated beat: regular 4-beat bars are numbered consecutively;
    # the odd 2- or 6-beat bar (a performed fermata, a bar of 2/4) is cut out (its beats get NaN).
    grid = np.full(len(times), np.nan)
    bar = 0
    for d0, d1 in zip(down[:-1], down[1:]):
        if d1 - d0 == 4:
            grid[d0:d1] = bar * 4 + np.arange(4)
            bar += 1
    tail = min(4, len(times) - down[-1])
    grid[down[-1]:down[-1] + tail] = bar * 4 + np.arange(tail)
    period = float(np.median(np.diff(times)))

    def to_beats(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, float)
        i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1)
        nxt = np.minimum(i + 1, len(times) - 1)
        span = np.where(nxt > i, times[nxt] - times[i], period)
        frac = np.clip((t - times[i]) / span, 0.0, None)
        # past the last annotated beat: continue at the median period; before the first: pickup (dropped)
        frac = np.where(nxt > i, np.minimum(frac, 1.0), frac)
        out = grid[i] + frac
        return np.where(t < times[0], np.nan, out)

    def to_steps(t: np.ndarray) -> np.ndarray:
        b = to_beats(t)
        return np.where(np.isfinite(b), np.round(np.nan_to_num(b, nan=-1) * STEPS_PER_BEAT), -1).astype(np.int64)

    tracks = {t.name.upper(): t for t in score.tracks}

    def notes_of(name: str) -> np.ndarray:
        t = tracks.get(name)
        if t is None or len(t.notes) == 0:
            return np.zeros((0, 4), np.int64)
        arr = t.notes.numpy()
        start = to_steps(arr["time"])
        end = to_steps(arr["time"] + arr["duration"])
        # a note that ends inside a cut-out bar is held to the end of its own bar
        bar_end = (start // STEPS_PER_BAR + 1) * STEPS_PER_BAR
        end = np.where((end < start) | (end > start + 8 * STEPS_PER_BAR), bar_end, end)
        out = np.stack([start, np.maximum(end - start, 1), arr["pitch"], arr["velocity"]], axis=1).astype(np.int64)
        out = out[start >= 0]
        return out[np.lexsort((out[:, 2], out[:, 0]))]

    melody, bridge, piano = notes_of("MELODY"), notes_of("BRIDGE"), notes_of("PIANO")
    chords = []
    for r in chord_rows:
        parsed = parse_chord_label(r[2])
        if parsed is None:
            continue
        s, e = to_steps(np.array([float(r[0]), float(r[1])]))
        if s >= 0 and e > s:
            chords.append(Chord(int(max(s, 0)), int(e), parsed[0], parsed[1]))
    tonic, mode = 0, "major"
    if key_rows:
        longest = max(key_rows, key=lambda r: float(r[1]) - float(r[0]))
        name, _, kind = longest[2].partition(":")
        tonic, mode = _pitch_class(name), ("minor" if kind.startswith("min") else "major")
    last = max((int(a[:, 0].max() + 1) for a in (melody, piano) if len(a)), default=0)
    return PopSong(sid, melody, bridge, piano, chords, tonic, mode, qpm=float(60.0 / period),
                   num_bars=int(np.ceil(last / STEPS_PER_BAR)))
