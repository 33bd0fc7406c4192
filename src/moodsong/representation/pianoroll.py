"""The data representation: MIDI <-> note-state matrix.

A piece is a matrix of shape ``(T, 2 * P)`` with one row per time step and, per
pitch, two bits laid out as ``[held | struck]``:

- ``held[t, p]``   the pitch sounds during step ``t``;
- ``struck[t, p]`` the pitch is (re)attacked at the start of step ``t``.
  A re-struck held note sets both bits.

The defaults are those of the classic RBM music demo: one step per sixteenth
note (``steps_per_quarter=4``) and 78 pitches starting at MIDI 24 (C1..F7).
Steps are musical time (quarter notes), so meters and tempo changes never
disturb the grid; tempo is chosen again when writing back.

MIDI I/O uses symusic (a C++ parser; the whole path is 70-180x faster than the demo's tick loop, see
``bench/parse.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import symusic

from moodsong.errors import BadMidiError
from moodsong.fileio import atomic_path

__all__ = [
    "PianoRollConfig",
    "read_score",
    "score_to_roll",
    "notes_to_roll",
    "midi_to_roll",
    "roll_to_notes",
    "roll_to_score",
    "write_midi",
    "canonicalize",
    "held",
    "struck",
    "roll_windows",
    "song_windows",
]

#: Ticks per quarter note used when writing MIDI.
WRITE_TPQ = 480


@dataclass(frozen=True)
class PianoRollConfig:
    """Settings of the note-state matrix.

    Parameters
    ----------
    lowest_pitch : int
        MIDI number of the first column (default 24, C1).
    num_pitches : int
        Number of pitch columns (default 78, so the top pitch is 101, F7).
        Notes outside the range are dropped.
    steps_per_quarter : int
        Time steps per quarter note (default 4: sixteenth notes).
    include_drums : bool
        Keep tracks on the General MIDI drum channel (default False).
    """

    lowest_pitch: int = 24
    num_pitches: int = 78
    steps_per_quarter: int = 4
    include_drums: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.lowest_pitch and self.lowest_pitch + self.num_pitches <= 128 and self.num_pitches > 0):
            raise ValueError(f"pitch range {self.lowest_pitch}..{self.lowest_pitch + self.num_pitches - 1} "
                             "is not within MIDI 0..127")
        if self.steps_per_quarter <= 0:
            raise ValueError("steps_per_quarter must be positive")

    @property
    def highest_pitch(self) -> int:
        """MIDI number of the last column (inclusive)."""
        return self.lowest_pitch + self.num_pitches - 1

    @property
    def width(self) -> int:
        """Columns per time step: ``2 * num_pitches``."""
        return 2 * self.num_pitches

    def steps_per_bar(self, beats_per_bar: int = 4) -> int:
        """Steps in one bar of ``beats_per_bar`` quarter notes (16 for 4/4 at sixteenth-note steps)."""
        return beats_per_bar * self.steps_per_quarter

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PianoRollConfig:
        return cls(**{k: d[k] for k in ("lowest_pitch", "num_pitches", "steps_per_quarter", "include_drums") if k in d})


def held(roll: np.ndarray) -> np.ndarray:
    """The ``held`` half of a note-state matrix, shape ``(T, P)``."""
    return roll[:, : roll.shape[1] // 2]


def struck(roll: np.ndarray) -> np.ndarray:
    """The ``struck`` half of a note-state matrix, shape ``(T, P)``."""
    return roll[:, roll.shape[1] // 2 :]


def read_score(source: str | os.PathLike | bytes | symusic.Score) -> symusic.Score:
    """Parse a MIDI file (path or bytes) with symusic; a score passes through, in ticks.

    Raises
    ------
    BadMidiError
        If the file is missing or is not a readable Standard MIDI File.
    """
    if isinstance(source, (symusic.core.ScoreTick, symusic.core.ScoreQuarter, symusic.core.ScoreSecond)):
        return source if type(source).__name__ == "ScoreTick" else source.to("tick")
    try:
        if isinstance(source, (bytes, bytearray)):
            return symusic.Score.from_midi(bytes(source))
        path = os.fspath(source)
        try:
            with open(path, "rb") as fh:  # open() directly: a stat first costs as much as parsing a small file
                data = fh.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BadMidiError(f"{path}: no such file") from None
        if data[:4] != b"MThd":
            raise BadMidiError(f"{path}: not a MIDI file (no MThd header)")
        return symusic.Score.from_midi(data)
    except BadMidiError:
        raise
    except Exception as exc:  # symusic raises RuntimeError/ValueError on malformed data
        name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
        raise BadMidiError(f"{name}: cannot parse MIDI ({exc})") from None


def score_to_roll(score: symusic.Score, config: PianoRollConfig = PianoRollConfig()) -> np.ndarray:
    """Convert a parsed score to a note-state matrix.

    Every non-drum track is merged (drums too if ``config.include_drums``).
    Onsets and offsets are rounded to the nearest step; a note shorter than a
    step lasts one step. Overlapping notes of one pitch merge into one held
    region with a strike at each onset.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(T, 2 * num_pitches)``; ``T`` covers the last note-off.
    """
    starts, durs, pitches = [], [], []
    for track in score.tracks:
        if track.is_drum and not config.include_drums:
            continue
        arr = track.notes.numpy()
        if len(arr["time"]):
            starts.append(arr["time"])
            durs.append(arr["duration"])
            pitches.append(arr["pitch"])
    if not starts:
        return np.zeros((0, config.width), np.uint8)
    # Most files have one or two pitched tracks: skip the copies concatenate would make.
    start = (starts[0] if len(starts) == 1 else np.concatenate(starts)).astype(np.int64)
    end = start + (durs[0] if len(durs) == 1 else np.concatenate(durs))
    pitch = pitches[0] if len(pitches) == 1 else np.concatenate(pitches)
    tpq2 = 2 * score.ticks_per_quarter
    spq2 = 2 * config.steps_per_quarter
    # Integer round-half-up of tick * spq / tpq, exact for any tick value.
    s = (start * spq2 + tpq2 // 2) // tpq2
    e = (end * spq2 + tpq2 // 2) // tpq2
    return notes_to_roll(s, e, pitch, config)


def notes_to_roll(
    start_step: np.ndarray, end_step: np.ndarray, pitch: np.ndarray, config: PianoRollConfig = PianoRollConfig()
) -> np.ndarray:
    """Note-state matrix from notes given in steps (``end_step`` exclusive) and MIDI pitches.

    Pitches outside the configured range are dropped; a note shorter than one
    step lasts one step.
    """
    P = config.num_pitches
    col = np.asarray(pitch).astype(np.int64) - config.lowest_pitch
    s = np.asarray(start_step, np.int64)
    e = np.asarray(end_step, np.int64)
    keep = (col >= 0) & (col < P) & (s >= 0)
    if not keep.all():
        s, e, col = s[keep], e[keep], col[keep]
    if s.size == 0:
        return np.zeros((0, 2 * P), np.uint8)
    e = np.maximum(e, s + 1)
    W = 2 * P
    roll = np.zeros((int(e.max()), W), np.uint8)
    flat = roll.reshape(-1)
    # Flat index of every held cell (rows s..e-1 of each note's column), built with one
    # repeat instead of a per-note loop; overlapping notes simply set a cell twice.
    lens = e - s
    first = s * W + col
    stop = np.cumsum(lens)
    idx = np.arange(int(stop[-1]), dtype=np.int64) * W
    idx += np.repeat(first - (stop - lens) * W, lens)
    flat[idx] = 1
    flat[first + P] = 1
    return roll


def midi_to_roll(source: str | os.PathLike | bytes, config: PianoRollConfig = PianoRollConfig()) -> np.ndarray:
    """Read a MIDI file (path or bytes) into a note-state matrix. See :func:`score_to_roll`."""
    return score_to_roll(read_score(source), config)


def canonicalize(roll: np.ndarray) -> np.ndarray:
    """Make a matrix self-consistent: a strike implies held, and every note start is struck.

    Sampled matrices may have ``struck`` without ``held``; such a bit is read as
    a one-step note. Matrices made by :func:`score_to_roll` are already canonical.
    """
    roll = np.asarray(roll).astype(bool)
    P = roll.shape[1] // 2
    h = roll[:, :P] | roll[:, P:]
    prev = np.zeros_like(h)
    prev[1:] = h[:-1]
    s = roll[:, P:] | (h & ~prev)
    return np.concatenate([h, s], axis=1).astype(np.uint8)


def roll_to_notes(roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Notes of a note-state matrix as ``(column, start_step, end_step)`` arrays.

    A note starts where a pitch is struck, or held after silence; it ends where
    the pitch stops being held or is struck again. ``end_step`` is exclusive.
    Results are sorted by start step, then column.
    """
    roll = np.asarray(roll)
    T, W = roll.shape
    P = W // 2
    h = (roll[:, :P] != 0) | (roll[:, P:] != 0)
    s = roll[:, P:] != 0
    # One row per pitch, padded with a silent step so no note runs into the next row.
    a = np.zeros((P, T + 1), bool)
    a[:, :T] = h.T
    prev = np.zeros_like(a)
    prev[:, 1:] = a[:, :-1]
    strike = np.zeros_like(a)
    strike[:, :T] = s.T
    onset = a & (strike | ~prev)
    off = a & ~np.roll(a, -1, axis=1)  # last held step of a run; the pad keeps roll() from wrapping
    on_idx = np.flatnonzero(onset)
    bounds = np.union1d(on_idx, np.flatnonzero(off) + 1)
    end_idx = bounds[np.searchsorted(bounds, on_idx, side="right")]
    col = on_idx // (T + 1)
    start = on_idx % (T + 1)
    end = end_idx - col * (T + 1)
    order = np.lexsort((col, start))
    return col[order], start[order], end[order]


def roll_to_score(
    roll: np.ndarray,
    config: PianoRollConfig = PianoRollConfig(),
    *,
    qpm: float = 120.0,
    velocity: int | np.ndarray = 80,
    program: int = 0,
    track_name: str = "moodsong",
    time_signature: tuple[int, int] = (4, 4),
) -> symusic.Score:
    """Build a one-track symusic score from a note-state matrix.

    Parameters
    ----------
    qpm : float
        Tempo in quarter notes per minute.
    velocity : int or array
        MIDI velocity 1..127, one value or one per note (in :func:`roll_to_notes` order).
    program : int
        General MIDI program 0..127 (0 = Acoustic Grand Piano).
    """
    if not 1 <= qpm <= 1000:
        raise ValueError(f"tempo {qpm} qpm is out of range 1..1000")
    if not 0 <= program <= 127:
        raise ValueError(f"General MIDI program {program} is out of range 0..127")
    col, start, end = roll_to_notes(roll)
    spq = config.steps_per_quarter
    tpq = WRITE_TPQ if WRITE_TPQ % spq == 0 else 96 * spq
    tps = tpq // config.steps_per_quarter
    vel = np.broadcast_to(np.clip(np.asarray(velocity), 1, 127), col.shape).astype(np.int8)
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, float(qpm)))
    score.time_signatures.append(symusic.TimeSignature(0, *time_signature))
    track = symusic.Track(track_name, int(program), False)
    if col.size:
        track.notes.extend(
            symusic.Note.from_numpy(
                (start * tps).astype(np.int32),
                ((end - start) * tps).astype(np.int32),
                (col + config.lowest_pitch).astype(np.int8),
                vel,
            )
        )
    score.tracks.append(track)
    return score


def write_midi(
    roll: np.ndarray,
    path: str | os.PathLike,
    config: PianoRollConfig = PianoRollConfig(),
    **kwargs,
) -> Path:
    """Write a note-state matrix to a MIDI file atomically. Keyword arguments go to :func:`roll_to_score`."""
    score = roll_to_score(roll, config, **kwargs)
    path = Path(path)
    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))
    return path


def roll_windows(roll: np.ndarray, num_timesteps: int, *, skip_first: bool = False) -> np.ndarray:
    """The non-overlapping ``num_timesteps``-step windows of one matrix, flattened to ``(n, num_timesteps * width)``.

    The last ``len(roll) % num_timesteps`` steps are left out; a piece shorter than a window gives ``n = 0``.
    ``skip_first=True`` drops the first window too: the demo's bug, kept only for the faithful benchmark.
    This is moodsong's one way of cutting windows (corpora, shards, evaluation).
    """
    n = roll.shape[0] // num_timesteps
    w = np.asarray(roll[: n * num_timesteps]).reshape(n, num_timesteps * roll.shape[1])
    return w[1:] if skip_first else w


def song_windows(rolls: Sequence[np.ndarray], num_timesteps: int) -> list[np.ndarray]:
    """Per piece, its :func:`roll_windows` (the demo trained song by song); pieces shorter than a window are left out.
    """
    return [roll_windows(r, num_timesteps) for r in rolls if r.shape[0] >= num_timesteps]
