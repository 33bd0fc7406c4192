"""Read a piece: chord names per bar or beat, and the estimated key.

Each candidate chord is a root plus the interval set of its kind (the pitch
classes music21's ``harmony.ChordSymbol`` gives for the same lead-sheet figure;
``tests/test_chords.py`` checks all 132 against music21). The key finder is
music21's key-profile analysis with the Temperley-Kostka-Payne weights, redone
in numpy (:func:`key_of_histogram`: the best Pearson correlation of the
duration-weighted pitch-class histogram with the 24 rotated profiles, the tonic
spelled as music21 spells it; same key as music21 on every test histogram). It is
right on every corpus piece we checked; Krumhansl-Kessler weights and music21's
default Aarden-Essen weights put Haydn's op. 74 no. 1 in G instead of C. It is
the one key finder of moodsong: the emotion estimator's :func:`key_estimate
<moodsong.emotion.music.key_estimate>` and the steering use it too. Nothing here
imports music21: building the templates and the key through music21 took 3.1 s
of a cold compose (its import and one ``ChordSymbol`` per candidate). What is ours is only the matching:
each segment's notes become a duration-weighted pitch-class histogram, and the
candidate chord that explains most of that weight (minus weight it leaves out,
a small cost for chord tones that are absent, and a preference for plain
triads and for the bass note as root) wins. This is the classic template
matching of chord recognition (Pardo & Birmingham 2002).

Names are spelled in the estimated key: ``Bø7 | E7 | Am`` in A minor, ``B-`` as
``Bb`` in flat keys.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np
import symusic

__all__ = ["ChordSegment", "Progression", "analyze", "estimate_key", "key_of_histogram", "segments", "name_chord",
           "SCALES"]

NO_CHORD = "N.C."

# Chord kinds considered, as music21 lead-sheet suffixes, with a prior cost:
# plain triads are preferred, sevenths must earn their fourth note.
_KINDS = {
    "": 0.0,  # major
    "m": 0.0,
    "o": 0.06,  # diminished
    "+": 0.1,  # augmented
    "7": 0.08,
    "maj7": 0.1,
    "m7": 0.1,
    "ø7": 0.08,
    "o7": 0.1,
    "sus4": 0.12,
    "sus2": 0.14,
}
_MISSING_COST = 0.25  # per chord tone absent from the segment
_BASS_BONUS = 0.06  # when the chord's root is the lowest sounding note


# Pitch classes above the root of each kind (music21's ChordSymbol gives the same sets; tests check it).
_INTERVALS = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "o": (0, 3, 6),
    "+": (0, 4, 8),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "ø7": (0, 3, 6, 10),
    "o7": (0, 3, 6, 9),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
}


@functools.lru_cache(maxsize=1)
def _templates() -> list[tuple[int, str, np.ndarray, float]]:
    """``(root_pc, suffix, 12-bit mask, prior)`` for every kind and root, kinds in ``_KINDS`` order."""
    out = []
    for suffix, prior in _KINDS.items():
        for root in range(12):
            mask = np.zeros(12, bool)
            mask[[(root + i) % 12 for i in _INTERVALS[suffix]]] = True
            out.append((root, suffix, mask, prior))
    return out


@dataclass(frozen=True)
class ChordSegment:
    """One span of a piece and the chord heard there.

    Attributes
    ----------
    start_q, end_q : float
        Span in quarter notes from the start of the piece.
    bar : int
        1-based bar number of the span's start.
    root : int or None
        Pitch class of the chord root (0 = C), None when nothing sounds.
    suffix : str
        Chord kind as a lead-sheet suffix ("", "m", "7", "ø7", ...).
    name : str
        Spelled chord symbol, e.g. ``"F#m"``, or ``"N.C."``.
    """

    start_q: float
    end_q: float
    bar: int
    root: int | None
    suffix: str
    name: str


@dataclass
class Progression:
    """Chords of a piece and its key.

    Attributes
    ----------
    key : str
        Estimated key, e.g. ``"C major"`` or ``"F# minor"``.
    segments : list of ChordSegment
        One per bar (or beat), in order.
    per : str
        ``"bar"`` or ``"beat"``.
    """

    key: str
    segments: list[ChordSegment] = field(default_factory=list)
    per: str = "bar"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    def format(self, per_line: int = 8) -> str:
        """Chord symbols separated by ``|``, ``per_line`` segments to a line."""
        names = self.names
        lines = [" | ".join(names[i : i + per_line]) for i in range(0, len(names), per_line)]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Notes and segments


def _notes(score: symusic.Score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pitched notes as ``(start_q, end_q, pitch)`` arrays (drums excluded), times in quarters."""
    tpq = score.ticks_per_quarter
    starts, ends, pitches = [], [], []
    for track in score.tracks:
        if track.is_drum or len(track.notes) == 0:
            continue
        a = track.notes.numpy()
        starts.append(a["time"] / tpq)
        ends.append((a["time"] + a["duration"]) / tpq)
        pitches.append(a["pitch"].astype(np.int64))
    if not starts:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(pitches)


def segments(score: symusic.Score, per: str = "bar") -> list[tuple[float, float, int]]:
    """Bar or beat spans ``(start_q, end_q, bar_number)`` covering the piece, from its time signatures.

    A beat is one denominator unit (a quarter in 4/4, an eighth in 6/8). With no
    time signature the piece is read as 4/4.
    """
    if per not in ("bar", "beat"):
        raise ValueError("per must be 'bar' or 'beat'")
    tpq = score.ticks_per_quarter
    end_q = score.end() / tpq if len(score.tracks) else 0.0
    sigs = sorted(((ts.time / tpq, ts.numerator, ts.denominator) for ts in score.time_signatures), key=lambda x: x[0])
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0.0, 4, 4))
    out: list[tuple[float, float, int]] = []
    bar = 1
    for i, (t0, num, den) in enumerate(sigs):
        t1 = sigs[i + 1][0] if i + 1 < len(sigs) else end_q
        beat_q = 4.0 / den
        bar_q = num * beat_q
        t = t0
        while t < t1 - 1e-9:
            bar_end = min(t + bar_q, t1) if i + 1 < len(sigs) else t + bar_q
            if per == "bar":
                out.append((t, bar_end, bar))
            else:
                b = t
                while b < bar_end - 1e-9:
                    out.append((b, min(b + beat_q, bar_end), bar))
                    b += beat_q
            t = bar_end
            bar += 1
    return out


def _histograms(notes, spans) -> tuple[np.ndarray, np.ndarray]:
    """Duration-weighted pitch-class histogram per span ``(S, 12)`` and lowest pitch per span (-1 when silent)."""
    starts, ends, pitches = notes
    hist = np.zeros((len(spans), 12))
    bass = np.full(len(spans), -1, np.int64)
    if len(spans) == 0 or starts.size == 0:
        return hist, bass
    lo = np.array([s[0] for s in spans])
    hi = np.array([s[1] for s in spans])
    for s, e, p in zip(starts, ends, pitches):
        i0 = max(0, int(np.searchsorted(hi, s, side="right")))
        i1 = int(np.searchsorted(lo, e, side="left"))
        for i in range(i0, i1):
            overlap = min(e, hi[i]) - max(s, lo[i])
            if overlap > 1e-9:
                hist[i, p % 12] += overlap
                if bass[i] < 0 or p < bass[i]:
                    bass[i] = p
    return hist, bass


# ---------------------------------------------------------------------------
# Key and spelling


# Temperley-Kostka-Payne key profiles (music21.analysis.discrete.TemperleyKostkaPayne), C major / C minor.
_TKP_MAJOR = np.array([0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400])
_TKP_MINOR = np.array([0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330])
# Rows 0..11 major, 12..23 minor, by tonic pitch class; centred so a dot product with a centred histogram
# is the numerator of Pearson's r.
_KEY_PROFILES = np.stack([np.roll(_TKP_MAJOR, k) for k in range(12)] + [np.roll(_TKP_MINOR, k) for k in range(12)])
_KEY_PROFILES = _KEY_PROFILES - _KEY_PROFILES.mean(1, keepdims=True)
_KEY_NORMS = np.linalg.norm(_KEY_PROFILES, axis=1)
# Tonic names as music21's key analysis spells them (its _bestKeyEnharmonic), "-" written as "b".
_TONIC_MAJOR = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_TONIC_MINOR = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def key_of_histogram(hist) -> tuple[int, str, float]:
    """Most likely key of a 12-bin pitch-class weight histogram (any scale, e.g. seconds or quarters).

    Pearson's r with each of the 24 Temperley-Kostka-Payne profiles; the best wins.
    Exact ties go to the higher tonic pitch class, then minor, as in music21.

    Returns
    -------
    (tonic_pc, mode, r)
        Tonic pitch class (0 = C), ``"major"`` or ``"minor"``, and the correlation.
    """
    h = np.asarray(hist, np.float64)
    hc = h - h.mean()
    norm = np.linalg.norm(hc)
    r = _KEY_PROFILES @ hc / (_KEY_NORMS * norm) if norm > 0 else np.zeros(24)
    # music21 sorts (r, tonic, mode) and takes the largest: among equal r, the highest tonic, minor over major.
    best = max(range(24), key=lambda k: (r[k], k % 12, k >= 12))
    return best % 12, ("major" if best < 12 else "minor"), float(r[best])


def key_name(tonic_pc: int, mode: str) -> str:
    """Spelled key name, e.g. ``key_name(9, "minor") == "A minor"``."""
    return f"{(_TONIC_MAJOR if mode == 'major' else _TONIC_MINOR)[tonic_pc]} {mode}"


def estimate_key(score: symusic.Score) -> str:
    """The piece's key (:func:`key_of_histogram` of its duration-weighted pitch classes), e.g. ``"A minor"``.

    Returns ``""`` for a piece without pitched notes.
    """
    starts, ends, pitches = _notes(score)
    if starts.size == 0:
        return ""
    weights = np.bincount(pitches % 12, weights=ends - starts, minlength=12)
    return key_name(*key_of_histogram(weights)[:2])


_LETTERS = "CDEFGAB"
_LETTER_PC = (0, 2, 4, 5, 7, 9, 11)
#: Scale steps above the tonic: major and natural minor.
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


def _spell(letter: int, pc: int) -> str:
    """The name of pitch class ``pc`` written on letter ``letter`` (0 = C .. 6 = B): ``(2, 1)`` -> ``"Db"``."""
    alter = (pc - _LETTER_PC[letter % 7] + 6) % 12 - 6
    return _LETTERS[letter % 7] + ("#" * alter if alter > 0 else "b" * -alter)


@functools.lru_cache(maxsize=64)
def _spelling(key_name: str) -> tuple[str, ...]:
    """Name of each pitch class as spelled in ``key_name`` (harmonic minor for minor keys).

    The scale's own spelling (letters in order from the tonic's), other pitch
    classes with sharps in sharp keys and flats otherwise: what music21's
    ``key.Key(...).getScale()`` gives (``tests/test_chords.py`` compares every key).
    """
    default_sharp = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    default_flat = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
    if not key_name:
        return tuple(default_flat)
    tonic, mode = key_name.split()
    letter = _LETTERS.index(tonic[0])
    tonic_pc = (_LETTER_PC[letter] + tonic.count("#") - tonic.count("b")) % 12
    scale = [_spell(letter + i, (tonic_pc + step) % 12) for i, step in enumerate(SCALES[mode])]
    sharps = sum(n.count("#") for n in scale) - sum(n.count("b") for n in scale)  # the key signature
    names = list(default_sharp if sharps > 0 else default_flat)
    for i, step in enumerate(SCALES[mode]):
        names[(tonic_pc + step) % 12] = scale[i]
    if mode == "minor":  # the raised leading tone of harmonic minor (G# in A minor)
        names[(tonic_pc + 11) % 12] = _spell(letter + 6, (tonic_pc + 11) % 12)
    return tuple(names)


# ---------------------------------------------------------------------------
# Chords


def name_chord(histogram: np.ndarray, bass_pc: int | None = None, key: str = "") -> tuple[int | None, str, str]:
    """Best chord for a 12-bin pitch-class weight histogram.

    Returns
    -------
    (root_pc, suffix, name)
        ``(None, "", "N.C.")`` when the histogram is empty.
    """
    h = np.asarray(histogram, float)
    total = h.sum()
    if total <= 0:
        return None, "", NO_CHORD
    w = h / total
    present = w > 0
    best = None
    for root, suffix, mask, prior in _templates():
        inside = w[mask].sum()
        missing = np.count_nonzero(mask & ~present)
        score = inside - (1 - inside) - _MISSING_COST * missing - prior
        if bass_pc is not None and root == bass_pc:
            score += _BASS_BONUS
        if best is None or score > best[0] + 1e-12:
            best = (score, root, suffix)
    _, root, suffix = best
    return root, suffix, _spelling(key)[root] + suffix


def analyze(score: symusic.Score | str | os.PathLike, per: str = "bar") -> Progression:
    """Chord per bar (or beat) and the key of a piece.

    Parameters
    ----------
    score : symusic.Score or path to a MIDI file
    per : {"bar", "beat"}

    Examples
    --------
    >>> prog = analyze("song.mid")          # doctest: +SKIP
    >>> print(prog.key, prog.format())      # doctest: +SKIP
    C major C | Am | F | G7
    """
    from moodsong.representation.pianoroll import read_score

    score = read_score(score)
    notes = _notes(score)
    key = estimate_key(score)
    spans = segments(score, per)
    hist, bass = _histograms(notes, spans)
    out = []
    for (s, e, bar), h, b in zip(spans, hist, bass):
        root, suffix, name = name_chord(h, int(b % 12) if b >= 0 else None, key)
        out.append(ChordSegment(s, e, bar, root, suffix, name))
    return Progression(key, out, per)
