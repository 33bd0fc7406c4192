"""The accompaniment: one-bar piano patterns learned from POP909, re-voiced over the plan.

Pop accompaniment is a pattern (a rhythm and a voicing: bass on the root, broken or
block chords above it) repeated over the changing chords. :class:`AccompanimentModel`
learns such patterns from real arrangements: for each bar of a training song whose chords
change only at the bar or half bar, every piano note that is a chord tone is written as
``(onset step, duration in steps, role, root pitch, velocity)``, where ``role`` is its place
in the chord (0 root, 1 third, 2 fifth, 3 seventh) and ``root pitch`` the MIDI pitch of the
chord root in the note's octave. Bars with fewer than 70 % chord tones, or without a bass
note below G3, are not kept.

To realise a pattern over a planned chord, each note becomes the same role of the new
chord with its root in the octave nearest the original (a role the chord lacks, such as
a seventh over a triad, doubles the root an octave up). Only chord tones are written, so
chord recognition on the accompaniment reads back the plan.

Arousal chooses among the patterns by how many notes they strike: calm requests draw
from the sparsest third, excited ones from the busiest.
"""

from __future__ import annotations

import numpy as np

from .pop909 import QUALITIES, STEPS_PER_BAR, PopSong

__all__ = ["AccompanimentModel", "MAX_NOTES"]

MAX_NOTES = 40  # notes kept per pattern bar (POP909's busiest bars have more; the first 40 by onset)
BASS_BELOW = 55  # a pattern must have a note below G3


def _role(interval: int, quality: str) -> int | None:
    ivs = QUALITIES[quality]
    return ivs.index(interval) if interval in ivs else None


class AccompanimentModel:
    """One-bar accompaniment patterns, chord-relative (see the module docstring).

    Parameters
    ----------
    max_patterns : int
        At most this many patterns are kept (a random subset, fixed seed).
    min_chord_tones : float
        Fraction of a bar's piano notes that must be chord tones for it to become a pattern.

    Attributes (after :meth:`fit`)
    ------------------------------
    patterns_ : ndarray of int16, shape (P, MAX_NOTES, 5)
        ``(onset, duration, role, root_pitch, velocity)``; unused rows have duration 0.
    onsets_ : ndarray of int, shape (P,)
        Distinct onset steps per pattern (the density used to match arousal).
    """

    def __init__(self, max_patterns: int = 4000, min_chord_tones: float = 0.7):
        self.max_patterns = max_patterns
        self.min_chord_tones = min_chord_tones

    def fit(self, songs: list[PopSong]) -> AccompanimentModel:
        pats = []
        for song in songs:
            piano = song.piano
            if not len(piano) or not song.chords:
                continue
            starts = np.array([c.start for c in song.chords])
            ends = np.array([c.end for c in song.chords])
            bar_of = piano[:, 0] // STEPS_PER_BAR
            for bar in np.unique(bar_of):
                b0 = int(bar) * STEPS_PER_BAR
                inside = [i for i in range(len(starts)) if starts[i] < b0 + STEPS_PER_BAR and ends[i] > b0]
                if not inside or any((starts[i] > b0 and (starts[i] - b0) % 8) for i in inside):
                    continue
                if starts[inside[0]] > b0 or ends[inside[-1]] < b0 + STEPS_PER_BAR:
                    continue  # part of the bar has no chord
                notes = piano[bar_of == bar]
                rows, lowest = [], 128
                for s, d, p, v in notes:
                    ch = song.chords[next(i for i in inside if starts[i] <= s < ends[i])] if any(
                        starts[i] <= s < ends[i] for i in inside) else None
                    if ch is None:
                        continue
                    iv = int(p - ch.root) % 12
                    role = _role(iv, ch.quality)
                    if role is None:
                        continue
                    rows.append((int(s - b0), int(min(d, 2 * STEPS_PER_BAR)), role, int(p - iv), int(v)))
                    lowest = min(lowest, int(p))
                if len(rows) < max(2, self.min_chord_tones * len(notes)) or lowest >= BASS_BELOW:
                    continue
                rows = rows[:MAX_NOTES]
                arr = np.zeros((MAX_NOTES, 5), np.int16)
                arr[: len(rows)] = rows
                pats.append(arr)
        if not pats:
            self.patterns_ = np.zeros((0, MAX_NOTES, 5), np.int16)
        else:
            pats = np.stack(pats)
            rng = np.random.default_rng(0)
            if len(pats) > self.max_patterns:
                pats = pats[np.sort(rng.choice(len(pats), self.max_patterns, replace=False))]
            self.patterns_ = pats
        self.onsets_ = self._onsets(self.patterns_)
        return self

    @staticmethod
    def _onsets(patterns: np.ndarray) -> np.ndarray:
        return np.array([len(np.unique(p[p[:, 1] > 0, 0])) for p in patterns], int)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"accomp.patterns": self.patterns_}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], **params) -> AccompanimentModel:
        self = cls(**params)
        self.patterns_ = a["accomp.patterns"].astype(np.int16)
        self.onsets_ = self._onsets(self.patterns_)
        return self

    def choose(self, arousal: float, rng: np.random.Generator) -> int:
        """A pattern index whose density suits ``arousal`` in [-1, 1]."""
        if not len(self.patterns_):
            raise ValueError("no accompaniment patterns")
        order = np.argsort(self.onsets_, kind="stable")
        q = (np.clip(arousal, -1, 1) + 1) / 2  # 0 calm .. 1 excited
        lo = int(np.clip(q - 0.25, 0, 0.8) * len(order))
        hi = max(lo + 1, int(np.clip(q + 0.05, 0.2, 1.0) * len(order)))
        return int(order[rng.integers(lo, hi)])

    def realize(self, pattern: int, chords: list, bar_start: int, velocity_scale: float = 1.0,
                end: int | None = None) -> np.ndarray:
        """Notes ``(start_step, duration, pitch, velocity)`` of one bar of ``pattern`` over ``chords``.

        ``chords`` are absolute :class:`~moodsong.song.pop909.Chord` spans; each note takes
        the chord sounding at its onset and is held at most to that chord's end (or ``end``).
        """
        out = []
        for on, dur, role, root_pitch, vel in self.patterns_[pattern]:
            if dur <= 0:
                continue
            t = bar_start + int(on)
            ch = next((c for c in chords if c.start <= t < c.end), None)
            if ch is None:
                continue
            ivs = QUALITIES[ch.quality]
            root = int(root_pitch) + ((ch.root - int(root_pitch)) % 12)
            if root - int(root_pitch) > 6:
                root -= 12
            pitch = root + ivs[role] if role < len(ivs) else root + 12
            stop = min(t + int(dur), ch.end, end if end is not None else ch.end)
            out.append((t, max(stop - t, 1), pitch, int(np.clip(round(vel * velocity_scale), 20, 120))))
        return np.array(out, np.int64).reshape(-1, 4)
