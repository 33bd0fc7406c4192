"""The accompaniment: one-bar piano patterns learned from POP909, re-voiced over the plan.

Pop accompaniment is a pattern (a rhythm and a voicing: bass on the root, broken or
block chords above it) repeated over the changing chords. :class:`AccompanimentModel`
learns such patterns from real arrangements: for each bar of a training song whose chords
change only at the bar or half bar, every piano note is written as
``(onset step, duration in steps, role, root pitch, velocity)``, where ``role`` is its place
in the chord (0 root, 1 third, 2 fifth, 3 seventh) or, for a non-chord tone, ``10 + i`` for
``i`` semitones above the root (kept when it is a ninth or a fourth, a colour tone, or when it
is short, a passing or neighbour note), and ``root pitch`` the MIDI pitch of the chord root in
the note's octave. Bars with fewer than 70 % chord tones, or without a bass note below G3, are
not kept.

To realise a pattern over a planned chord, each note becomes the same role of the new
chord at the pitch nearest to where it was played (a role the chord lacks, such as a
seventh over a triad, doubles the root), kept between the lowest note the pianist played in the
run (:meth:`AccompanimentModel.run_floor`) and E6. At least 70 % of every bar's
notes are chord tones, so chord recognition on the accompaniment reads back the plan. Keeping
the pianist's other tones (first only short ninths and fourths were kept) brought the songs'
pitch-class entropy to real songs' (2.70 bits mean on POP909 valid, was 2.65) and its overlap
from 0.72 to 0.86 (bench songs on valid, 96 songs).

Patterns are kept as *runs*: consecutive qualifying bars of one arrangement (at least
:attr:`AccompanimentModel.min_run`), so a section is accompanied by the bar-to-bar texture
of one real pianist, with its own repetitions and variations, re-voiced over the new
chords. The measured reason: single patterns drawn independently made every song equally
repetitive (per-piece bar repetition 0.48-0.59, 10th-90th percentile) where real songs
range 0.41-0.83. Arousal chooses among the runs by how many onsets their bars strike:
calm requests draw from the sparser half, excited ones from the busier (a narrower window,
the sparsest or busiest quarter, made calm songs sparser than any real quarter of POP909).
"""

from __future__ import annotations

import numpy as np

from moodsong.corpora.pop909 import QUALITIES, STEPS_PER_BAR, PopSong

__all__ = ["AccompanimentModel", "MAX_NOTES"]

MAX_NOTES = 32  # notes kept per pattern bar (POP909's busiest bars have more; the first 32 by onset)
BASS_BELOW = 55  # a pattern must have a note below G3
PASSING = (2, 5)  # colour tones kept at any length: the ninth and the fourth above the root
PASSING_ROLE = 10  # role 10 + i: a non-chord tone i semitones above the root; 0-3 are chord tones
# realised notes stay within C2..E6 by default (POP909 piano, first 32 bars: lowest note D2 median, G#1..F2
# 10th-90th percentile; highest C#5 median, G#4..A5)
LOWEST, HIGHEST = 36, 88
# a song's floor is the lowest note its arrangement played, within G1..G3: with C2 for every song, half of the
# songs' lowest note was C2 and their pitch-range overlap with POP909 0.80 (0.87 with the pianist's own floor;
# bench/songs.py, valid)
LOWEST_FLOOR = 31


def played_pitch(role, root_pitch):
    """Where the pianist played a pattern note (MIDI; arrays or scalars): the root pitch plus the role's
    interval (chord tones as in a major seventh chord, an estimate; non-chord tones exactly)."""
    role = np.asarray(role, int)
    return np.asarray(root_pitch, int) + np.where(role >= PASSING_ROLE, role - PASSING_ROLE,
                                                  np.array([0, 4, 7, 10])[np.minimum(role, 3)])


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

    def __init__(self, max_patterns: int = 6000, min_chord_tones: float = 0.7, min_run: int = 4):
        self.max_patterns = max_patterns
        self.min_chord_tones = min_chord_tones
        self.min_run = min_run

    def _bar_pattern(self, song: PopSong, notes: np.ndarray, b0: int, starts, ends) -> np.ndarray | None:
        """One bar of a song's piano as a chord-relative pattern, or None if it does not qualify."""
        inside = [i for i in range(len(starts)) if starts[i] < b0 + STEPS_PER_BAR and ends[i] > b0]
        if not inside or any((starts[i] > b0 and (starts[i] - b0) % 8) for i in inside):
            return None
        if starts[inside[0]] > b0 or ends[inside[-1]] < b0 + STEPS_PER_BAR:
            return None  # part of the bar has no chord
        rows, lowest, tones = [], 128, 0
        for s, d, p, v in notes:
            i = next((i for i in inside if starts[i] <= s < ends[i]), None)
            if i is None:
                continue
            ch = song.chords[i]
            iv = int(p - ch.root) % 12
            role = _role(iv, ch.quality)
            if role is None and (d <= 2 or iv in PASSING):
                role = PASSING_ROLE + iv  # a colour tone (ninth, fourth), or a short passing or neighbour note
            if role is None:
                continue
            tones += role < PASSING_ROLE
            rows.append((int(s - b0), int(min(d, 2 * STEPS_PER_BAR)), role, int(p - iv), int(v)))
            lowest = min(lowest, int(p))
        if tones < max(2, self.min_chord_tones * len(notes)) or lowest >= BASS_BELOW:
            return None
        arr = np.zeros((MAX_NOTES, 5), np.int16)
        rows = rows[:MAX_NOTES]
        arr[: len(rows)] = rows
        return arr

    def fit(self, songs: list[PopSong]) -> AccompanimentModel:
        runs: list[tuple[int, list[np.ndarray]]] = []  # (song index, consecutive bar patterns)
        for k, song in enumerate(songs):
            piano = song.piano
            if not len(piano) or not song.chords:
                continue
            starts = np.array([c.start for c in song.chords])
            ends = np.array([c.end for c in song.chords])
            bar_of = piano[:, 0] // STEPS_PER_BAR
            run: list[np.ndarray] = []
            for bar in range(int(bar_of.max()) + 2):
                pat = self._bar_pattern(song, piano[bar_of == bar], bar * STEPS_PER_BAR, starts, ends) \
                    if (bar_of == bar).any() else None
                if pat is not None:
                    run.append(pat)
                    continue
                if len(run) >= self.min_run:
                    runs.append((k, run))
                run = []
        rng = np.random.default_rng(0)
        order = rng.permutation(len(runs))
        kept, total = [], 0
        for i in order:  # whole runs, at random, until the budget is spent
            if total + len(runs[i][1]) > self.max_patterns:
                continue
            kept.append(runs[i])
            total += len(runs[i][1])
        kept.sort(key=lambda r: r[0])
        self.patterns_ = (np.stack([p for _, run in kept for p in run]) if kept
                          else np.zeros((0, MAX_NOTES, 5), np.int16))
        self.runs_ = np.zeros((len(kept), 3), np.int64)  # first pattern, length, song
        t = 0
        for j, (k, run) in enumerate(kept):
            self.runs_[j] = (t, len(run), k)
            t += len(run)
        self._index()
        return self

    def _index(self) -> None:
        self.onsets_ = self._onsets(self.patterns_)
        self.run_density_ = np.array([self.onsets_[a: a + n].mean() for a, n, _ in self.runs_]) if len(self.runs_) \
            else np.zeros(0)

    @staticmethod
    def _onsets(patterns: np.ndarray) -> np.ndarray:
        return np.array([len(np.unique(p[p[:, 1] > 0, 0])) for p in patterns], int)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"accomp.patterns": self.patterns_, "accomp.runs": self.runs_}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], **params) -> AccompanimentModel:
        self = cls(**params)
        self.patterns_ = a["accomp.patterns"].astype(np.int16)
        self.runs_ = a["accomp.runs"].astype(np.int64)
        self._index()
        return self

    def choose_run(self, arousal: float, rng: np.random.Generator, song: int | None = None,
                   exclude: int | None = None, min_length: int = 0) -> int:
        """A run (index into ``runs_``) whose density suits ``arousal`` in [-1, 1].

        With ``song``, another run of that song is preferred (a chorus after a verse of one
        arrangement), if it has one. Runs of at least ``min_length`` bars are preferred when there
        are any among the candidates (a long run does not loop within a phrase).
        """
        if not len(self.runs_):
            raise ValueError("no accompaniment patterns")
        long_enough = self.runs_[:, 1] >= min_length
        if song is not None:
            same = [j for j in np.flatnonzero(self.runs_[:, 2] == song) if j != exclude]
            same = [j for j in same if long_enough[j]] or same
            if same:
                return int(rng.choice(same))
        order = np.argsort(self.run_density_, kind="stable")
        q = (np.clip(arousal, -1, 1) + 1) / 2  # 0 calm .. 1 excited
        lo = int(np.clip(q - 0.35, 0, 0.6) * len(order))
        hi = max(lo + 1, int(np.clip(q + 0.3, 0.5, 1.0) * len(order)))
        window = order[lo:hi]
        window = window[long_enough[window]] if long_enough[window].any() else window
        return int(window[rng.integers(len(window))])

    def run_pattern(self, run: int, bar: int, loop: int | None = None) -> int:
        """The pattern index for the ``bar``-th bar of a section played with ``run`` (the run repeats).

        ``loop`` bars, if given, repeat the run's first bars instead (a pianist who keeps to one figure).
        """
        first, length, _ = self.runs_[run]
        return int(first + bar % (min(loop, length) if loop else length))

    def run_floor(self, run: int) -> int:
        """The lowest pitch the pianist played in ``run`` (MIDI), kept within LOWEST_FLOOR..BASS_BELOW."""
        first, length, _ = self.runs_[run]
        pats = self.patterns_[first: first + length].reshape(-1, 5)
        pats = pats[pats[:, 1] > 0]
        if not len(pats):
            return LOWEST
        return int(np.clip(played_pitch(pats[:, 2], pats[:, 3]).min(), LOWEST_FLOOR, BASS_BELOW))

    def realize(self, pattern: int, chords: list, bar_start: int, velocity_scale: float = 1.0,
                end: int | None = None, scale=None, lowest: int | None = None) -> np.ndarray:
        """Notes ``(start_step, duration, pitch, velocity)`` of one bar of ``pattern`` over ``chords``.

        ``chords`` are absolute :class:`~moodsong.corpora.pop909.Chord` spans; each note takes
        the chord sounding at its onset and is held at most to that chord's end (or ``end``).
        ``scale`` (the key's pitch classes), if given, keeps held non-chord tones in the key: a
        colour tone copied by its interval over another root can fall outside it (a ninth over iii
        is chromatic), and is moved a semitone down (or up) onto the scale. Short passing notes
        (an eighth or less) may stay chromatic, as real pianists' do (moving them too left the
        songs more in-scale than POP909's: scale consistency 0.992 against 0.986).
        ``lowest`` (MIDI pitch; default C2) is the floor: a note re-voiced below it goes up an octave.
        """
        out = []
        low = LOWEST if lowest is None else lowest
        for on, dur, role, root_pitch, vel in self.patterns_[pattern]:
            if dur <= 0:
                continue
            t = bar_start + int(on)
            ch = next((c for c in chords if c.start <= t < c.end), None)
            if ch is None:
                continue
            ivs = QUALITIES[ch.quality]
            if role >= PASSING_ROLE:
                if ch.quality.startswith("sus") or len(ivs) < 3:
                    continue
                pc = (ch.root + role - PASSING_ROLE) % 12
                was = int(played_pitch(role, root_pitch))
                if scale is not None and pc not in scale and dur > 2:  # short chromatic passing notes stay
                    step = -1 if (pc - 1) % 12 in scale else 1
                    pc, was = (pc + step) % 12, was + step
            else:
                pc = (ch.root + (ivs[role] if role < len(ivs) else 0)) % 12
                was = int(played_pitch(role, root_pitch))
            pitch = was + (pc - was + 6) % 12 - 6  # the nearest pitch of the new chord tone
            # keep the texture in the register POP909's pianists use (lowest note ~D2, highest ~B5)
            pitch = pitch + 12 if pitch < low else pitch - 12 if pitch > HIGHEST else pitch
            stop = min(t + int(dur), ch.end, end if end is not None else ch.end)
            out.append((t, max(stop - t, 1), pitch, int(np.clip(round(vel * velocity_scale), 20, 120))))
        notes = np.array(out, np.int64).reshape(-1, 4)
        return self._complete(notes, chords, bar_start)

    @staticmethod
    def _complete(notes: np.ndarray, chords: list, bar_start: int) -> np.ndarray:
        """Add the third of any chord that the bar's notes leave out (a bare fifth is neither major nor minor)."""
        extra = []
        for c in chords:
            lo, hi = max(c.start, bar_start), min(c.end, bar_start + STEPS_PER_BAR)
            if lo >= hi or len(QUALITIES[c.quality]) < 2 or c.quality.startswith("sus"):
                continue
            inside = notes[(notes[:, 0] >= lo) & (notes[:, 0] < hi)] if len(notes) else notes
            third = (c.root + QUALITIES[c.quality][1]) % 12
            if len(inside) and np.any(inside[:, 2] % 12 == third):
                continue
            vel = int(inside[:, 3].mean()) if len(inside) else 60
            pitch = 60 + (third - 60) % 12 - (12 if (third - 60) % 12 > 7 else 0)  # near middle C
            extra.append((lo, hi - lo, pitch, vel))
        return np.concatenate([notes, np.array(extra, np.int64).reshape(-1, 4)]) if extra else notes
