"""Songs to learn from: POP909 folders with their annotations, or any folder of MIDI files.

A POP909-style folder (``NNN/NNN.mid`` with ``chord_midi.txt``, ``beat_midi.txt`` and
``key_audio.txt``) is read by :func:`moodsong.corpora.pop909.load_song` and split by song
number. Any other folder of ``.mid``/``.midi`` files (searched recursively) is read from
its own grid (ticks per quarter), and what has no annotation is recognised:

- the melody is the track named like a melody (``melody``, ``vocal``, ``lead``, ``voice``,
  ``MELODY``), else the non-drum track with the highest mean pitch whose notes rarely
  overlap; everything else that is not a drum track is the accompaniment;
- chords, one per bar, by :func:`moodsong.representation.chords.analyze` (a single beat holds too few
  notes to tell a chord's quality); the key by :func:`moodsong.representation.chords.estimate_key`;
- only pieces in 4/4 are kept; every 10th file (by sorted path) is the validation split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from moodsong.corpora.pop909 import STEPS_PER_BAR, Chord, PopSong, load_song, parse_chord_label, song_folders, split_of
from moodsong.errors import MoodsongError

__all__ = ["load_songs", "song_from_midi", "is_pop909"]

_MELODY_NAMES = ("melody", "vocal", "voice", "lead", "singer")


def is_pop909(root: Path) -> bool:
    return root.is_dir() and any((p / "chord_midi.txt").exists() for p in list(root.iterdir())[:50] if p.is_dir())


def _notes(track, tpq: int) -> np.ndarray:
    if len(track.notes) == 0:
        return np.zeros((0, 4), np.int64)
    a = track.notes.numpy()
    step = tpq / 4
    start = np.round(a["time"] / step).astype(np.int64)
    dur = np.maximum(np.round(a["duration"] / step).astype(np.int64), 1)
    out = np.stack([start, dur, a["pitch"], a["velocity"]], 1).astype(np.int64)
    return out[np.lexsort((out[:, 2], out[:, 0]))]


def _overlap(notes: np.ndarray) -> float:
    if len(notes) < 2:
        return 0.0
    return float(np.mean(notes[1:, 0] < notes[:-1, 0] + notes[:-1, 1]))


def song_from_midi(path: str | os.PathLike) -> PopSong:
    """A song read from one MIDI file, annotations recognised (see the module docstring).

    Raises
    ------
    MoodsongError
        If the file is unreadable, not in 4/4, or has no melody-like track.
    """
    import symusic

    from moodsong.representation.chords import analyze, estimate_key

    path = Path(path)
    try:
        score = symusic.Score(str(path))
    except Exception as e:  # symusic raises RuntimeError/ValueError on broken files
        raise MoodsongError(f"{path}: not a readable MIDI file ({e})") from None
    if any((ts.numerator, ts.denominator) != (4, 4) for ts in score.time_signatures):
        raise MoodsongError(f"{path}: not in 4/4")
    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    if not tracks:
        raise MoodsongError(f"{path}: no pitched notes")
    tpq = score.ticks_per_quarter
    named = [t for t in tracks if any(n in t.name.lower() for n in _MELODY_NAMES)]
    if named:
        mel_track = named[0]
    else:
        cands = [t for t in tracks if _overlap(_notes(t, tpq)) < 0.2]
        if not cands or len(tracks) < 2:
            raise MoodsongError(f"{path}: no separate melody track (name one 'melody')")
        mel_track = max(cands, key=lambda t: float(np.mean(t.notes.numpy()["pitch"])))
    others = [t for t in tracks if t is not mel_track]
    melody = _notes(mel_track, tpq)
    piano = np.concatenate([_notes(t, tpq) for t in others]) if others else np.zeros((0, 4), np.int64)
    key = estimate_key(score)
    name, _, mode = key.partition(" ")
    parsed = parse_chord_label(f"{name.replace('-', 'b')}:maj") if name else None
    tonic = parsed[0] if parsed else 0
    prog = analyze(score, per="bar")
    chords = []
    for seg in prog.segments:
        start = int(round(seg.start_q * 4))
        if seg.root is None:
            continue
        q = seg.suffix if seg.suffix in ("", "m", "7", "maj7", "m7", "o", "+", "ø7", "o7", "sus4", "sus2") else ""
        chords.append(Chord(start, start + STEPS_PER_BAR, seg.root, q))
    qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    last = max(int(melody[:, 0].max()) if len(melody) else 0, int(piano[:, 0].max()) if len(piano) else 0)
    return PopSong(path.stem, melody, piano[:0], piano, chords, tonic, "minor" if mode == "minor" else "major",
                   qpm, last // STEPS_PER_BAR + 1)


def load_songs(source: str | os.PathLike, progress: bool = True) -> tuple[list[PopSong], list[PopSong], list[str]]:
    """``(train, valid, skipped)`` songs of a POP909 root or a MIDI folder.

    POP909's test songs (``NNN % 10 == 0``) are never returned.
    """
    root = Path(source)
    if not root.exists():
        raise MoodsongError(f"{root}: no such file or folder")
    train, valid, skipped = [], [], []
    if is_pop909(root):
        items = [(p, split_of(p.name)) for p in song_folders(root)]
        items = [(p, s) for p, s in items if s != "test"]
        reader = load_song
    else:
        files = sorted(p for p in ([root] if root.is_file() else root.rglob("*"))
                       if p.suffix.lower() in (".mid", ".midi"))
        if not files:
            raise MoodsongError(f"{root}: no MIDI files")
        items = [(p, "valid" if i % 10 == 9 else "train") for i, p in enumerate(files)]
        reader = song_from_midi
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc="reading songs", unit="song", leave=False)
    for p, split in it:
        try:
            song = reader(p)
        except MoodsongError as e:
            skipped.append(str(e))
            continue
        (valid if split == "valid" else train).append(song)
    return train, valid, skipped
