"""The harmonic plan: chord progressions learned from POP909's annotations, chosen for an emotion.

A chord is written relative to the key, as a scale step above the tonic (0-11) and a
quality (:data:`QUALITY_NAMES`), so ``I V vi IV`` in any major key is the same sequence.
:class:`ChordPlanModel` counts, separately for major and minor songs,

- which chord follows which (first and second order, add-one smoothed; a second-order
  context seen fewer than :attr:`ChordPlanModel.min_context` times backs off to first order),
- how long chords last (harmonic rhythm, in half bars) in slow, medium and fast songs,
- which chords end a 4-bar phrase.

How a plan follows the emotion
------------------------------
- Mode: valence >= 0 major, < 0 minor (POP909: 465 major and 353 minor songs).
- Qualities: the learned next-chord probabilities are tilted by ``exp(tilt * valence *
  brightness)`` where :data:`BRIGHTNESS` rates each quality from dark (diminished, minor)
  to bright (major, major seventh); then the candidate whose duration-weighted brightness
  is closest to the target wins (:meth:`ChordPlanModel.plan_valence`).
- Harmonic rhythm: arousal picks the tempo class whose chord durations are sampled (fast
  songs change chord every half bar more often), and tilts the odds of a half-bar change by
  ``exp(1.2 * arousal)``.

Phrases end on a cadence: an open phrase on the dominant (V, or IV), a closed one and the
piece on the tonic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moodsong.corpora.pop909 import QUALITIES, STEPS_PER_BAR, Chord, PopSong

__all__ = ["QUALITY_NAMES", "quality_index", "BRIGHTNESS", "PlanChord", "ChordPlanModel", "chord_name",
           "NUM_TOKENS", "TEMPO_EDGES"]

QUALITY_NAMES: tuple[str, ...] = tuple(QUALITIES)
NUM_TOKENS = 12 * len(QUALITY_NAMES)
HALF_BAR = STEPS_PER_BAR // 2
#: Brightness of each quality, dark (-) to bright (+); used to tilt chord choice by valence.
BRIGHTNESS = {"": 1.0, "maj7": 1.0, "sus2": 0.6, "7": 0.4, "sus4": 0.2, "+": -0.3, "m7": -0.6, "m": -1.0,
              "ø7": -1.3, "o": -1.5, "o7": -1.5}
#: Tempo classes (qpm) for harmonic rhythm: slow < 80 <= medium < 110 <= fast.
TEMPO_EDGES = (80.0, 110.0)
_NAMES_SHARP = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NAMES_FLAT = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_FLAT_KEYS = {("major", 5), ("major", 10), ("major", 3), ("major", 8), ("major", 1), ("minor", 2), ("minor", 7),
              ("minor", 0), ("minor", 5), ("minor", 10)}


_BRIGHT_TOKENS = np.array([BRIGHTNESS[q] for _ in range(12) for q in QUALITY_NAMES])


def quality_index(q: str) -> int:
    return QUALITY_NAMES.index(q)


def chord_name(root: int, quality: str, tonic: int = 0, mode: str = "major") -> str:
    """Lead-sheet name such as ``"F#m7"`` or ``"Bbmaj7"``, spelled with flats in flat keys."""
    names = _NAMES_FLAT if (mode, tonic % 12) in _FLAT_KEYS else _NAMES_SHARP
    return names[root % 12] + quality


@dataclass(frozen=True)
class PlanChord:
    """One chord of a plan, on the sixteenth-step grid, relative to the key.

    Attributes
    ----------
    start, end : int
        Span in sixteenth steps from the start of the song.
    degree : int
        Root in semitones above the tonic.
    quality : str
        A key of :data:`moodsong.corpora.pop909.QUALITIES`.
    """

    start: int
    end: int
    degree: int
    quality: str

    def absolute(self, tonic: int) -> Chord:
        return Chord(self.start, self.end, (self.degree + tonic) % 12, self.quality)

    def to_dict(self, tonic: int, mode: str) -> dict:
        return {"bar": self.start // STEPS_PER_BAR + 1, "beat": (self.start % STEPS_PER_BAR) // 4 + 1,
                "beats": (self.end - self.start) / 4,
                "chord": chord_name(self.degree + tonic, self.quality, tonic, mode)}


def _token(degree: int, quality: str) -> int:
    return (degree % 12) * len(QUALITY_NAMES) + quality_index(quality)


def _untoken(tok: int) -> tuple[int, str]:
    return tok // len(QUALITY_NAMES), QUALITY_NAMES[tok % len(QUALITY_NAMES)]


def _song_chords(song: PopSong) -> list[tuple[int, int]]:
    """``(token, half_bars)`` of a song's chord changes (repeats of one chord merged)."""
    out: list[list[int]] = []
    for ch in song.chords:
        tok = _token(ch.root - song.tonic, ch.quality)
        halves = max(1, round((ch.end - ch.start) / HALF_BAR))
        if out and out[-1][0] == tok:
            out[-1][1] += halves
        else:
            out.append([tok, halves])
    return [(t, h) for t, h in out]


class ChordPlanModel:
    """Key-relative chord n-grams and harmonic rhythm learned from annotated songs.

    Parameters
    ----------
    min_context : int
        Second-order contexts seen fewer times back off to first order.
    tilt : float
        How strongly valence tilts chord choice towards bright or dark qualities.
    min_chord : int
        Chords seen fewer times (as the next chord, per mode) are never sampled; in a corpus of
        fewer than ``1000 * min_chord`` chord changes the floor is 0.1 % of them (at least 1).
    hold : float
        Log-odds against a half-bar chord change, on top of the learned harmonic rhythm: a bar
        with two chords is heard as one chord or the other, and POP909's annotations change chord
        at the half bar often (2 of 3 chord spans) partly because they mark anticipations.

    Attributes (after :meth:`fit`)
    ------------------------------
    bigram_ : ndarray, shape (2, NUM_TOKENS, NUM_TOKENS)
        Counts, [mode (0 major, 1 minor), previous, next].
    trigram_ : dict
        ``(mode, a, b) -> counts over next`` for contexts seen at least ``min_context`` times.
    start_, cadence_ : ndarray, shape (2, NUM_TOKENS)
        Counts of first chords and of chords that end a 4-bar phrase.
    rhythm_ : ndarray, shape (3, 5)
        Counts of chord lengths 1..4 half bars (index 1-4; 0 unused) per tempo class.
    """

    def __init__(self, min_context: int = 8, tilt: float = 1.5, hold: float = 2.5, min_chord: int = 30):
        self.min_context = min_context
        self.min_chord = min_chord
        self.tilt = tilt
        self.hold = hold

    def fit(self, songs: list[PopSong]) -> ChordPlanModel:
        self.bigram_ = np.zeros((2, NUM_TOKENS, NUM_TOKENS))
        self.start_ = np.zeros((2, NUM_TOKENS))
        self.cadence_ = np.zeros((2, NUM_TOKENS))
        self.rhythm_ = np.zeros((3, 5))
        tri: dict[tuple[int, int, int], np.ndarray] = {}
        for song in songs:
            m = int(song.mode == "minor")
            seq = _song_chords(song)
            if not seq:
                continue
            self.start_[m, seq[0][0]] += 1
            tempo = int(np.searchsorted(TEMPO_EDGES, song.qpm, side="right"))
            for _, halves in seq:
                self.rhythm_[tempo, min(halves, 4)] += 1
            for (a, _), (b, _) in zip(seq, seq[1:]):
                self.bigram_[m, a, b] += 1
            for (a, _), (b, _), (c, _) in zip(seq, seq[1:], seq[2:]):
                tri.setdefault((m, a, b), np.zeros(NUM_TOKENS))[c] += 1
            for ch in song.chords:  # chords sounding at the end of a 4-bar phrase
                if ch.end % (4 * STEPS_PER_BAR) == 0 and ch.start < ch.end:
                    self.cadence_[m, _token(ch.root - song.tonic, ch.quality)] += 1
        self.trigram_ = {k: v for k, v in tri.items() if v.sum() >= self.min_context}
        return self

    # -- persistence (plain arrays: the model is saved inside the song model's safetensors) --

    def to_arrays(self) -> dict[str, np.ndarray]:
        keys = np.array(sorted(self.trigram_), dtype=np.int64).reshape(-1, 3)
        return {"plan.bigram": self.bigram_.astype(np.float32), "plan.start": self.start_.astype(np.float32),
                "plan.cadence": self.cadence_.astype(np.float32), "plan.rhythm": self.rhythm_.astype(np.float32),
                "plan.trigram_keys": keys,
                "plan.trigram_counts": np.stack([self.trigram_[tuple(k)] for k in keys.tolist()]).astype(np.float32)
                if len(keys) else np.zeros((0, NUM_TOKENS), np.float32)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], **params) -> ChordPlanModel:
        self = cls(**params)
        self.bigram_, self.start_ = a["plan.bigram"].astype(float), a["plan.start"].astype(float)
        self.cadence_, self.rhythm_ = a["plan.cadence"].astype(float), a["plan.rhythm"].astype(float)
        keys, counts = a["plan.trigram_keys"].tolist(), a["plan.trigram_counts"]
        self.trigram_ = {tuple(k): c.astype(float) for k, c in zip(keys, counts)}
        return self

    # -- sampling -------------------------------------------------------------------

    def _tilt(self, valence: float) -> np.ndarray:
        return self.tilt * valence * _BRIGHT_TOKENS

    def next_logits(self, mode: int, context: list[int], valence: float) -> np.ndarray:
        """Log-probabilities of the next chord token after ``context`` (tilted by valence)."""
        if len(context) >= 2 and (mode, context[-2], context[-1]) in self.trigram_:
            counts = self.trigram_[(mode, context[-2], context[-1])] + 0.1 * (self.bigram_[mode, context[-1]] > 0)
        elif context:
            counts = self.bigram_[mode, context[-1]].copy()
            counts[context[-1]] = 0  # a change, not a repeat (repeats are merged when counting)
        else:
            counts = self.start_[mode].copy()
        # chords the training songs use rarely (fewer than ``min_chord`` times in this mode, e.g. the
        # 8 augmented chords of POP909) are never chosen: tilted or tempered, they would come out odd
        seen = self.bigram_[mode].sum(0)
        # a small corpus (a user's own folder) keeps every chord it has: the floor is at most 0.1 % of its changes
        known = seen >= min(self.min_chord, max(1.0, 1e-3 * seen.sum()))
        counts = np.where(known, counts + 1e-3, 0.0)
        logits = np.log(np.maximum(counts, 1e-12)) + self._tilt(valence)
        logits[~known] = -np.inf
        if context:
            logits[context[-1]] = -np.inf
        return logits - np.logaddexp.reduce(logits)

    def sample_phrase(self, bars: int, mode: str, valence: float, arousal: float, rng: np.random.Generator,
                      context: list[int] | None = None, ending: str = "closed", start: int = 0,
                      tries: int = 12, temperature: float = 1.0) -> list[PlanChord]:
        """A plan for one phrase of ``bars`` bars starting at step ``start``.

        ``ending`` is ``"closed"`` (last chord the tonic), ``"open"`` (a dominant or
        subdominant) or ``"free"``; ``temperature`` below 1 keeps to the commonest chords.
        Up to ``tries`` samples are drawn; the most probable one with the right ending wins;
        if none has it, the last chord is replaced by the cadence chord (and the plan says so
        through its chords, nothing hidden).
        """
        m = int(mode == "minor")
        tonic_tok = _token(0, "m" if m else "")
        open_toks = [_token(7, ""), _token(7, "7"), _token(5, "m" if m else ""), _token(7, "sus4")]
        tempo = 0 if arousal < -0.25 else 2 if arousal > 0.25 else 1
        rhythm = self.rhythm_[tempo, 1:3] + 1.0  # half-bar or whole-bar changes inside a phrase
        rhythm = rhythm / rhythm.sum()
        # and arousal tilts it further: calmer plans hold chords longer
        half = 1.0 / (1.0 + np.exp(-(np.log(rhythm[0] / rhythm[1]) + 1.2 * arousal - self.hold)))
        rhythm = np.array([half, 1.0 - half])
        best, best_lp = None, -np.inf
        cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        for _ in range(tries):
            ctx = list(context or [])
            halves_left = 2 * bars
            seq, lp = [], 0.0
            while halves_left > 0:
                key = tuple(ctx[-2:])
                if key not in cache:
                    lg = self.next_logits(m, ctx, valence) / temperature
                    lg = lg - np.logaddexp.reduce(lg)
                    cache[key] = (lg, np.cumsum(np.exp(lg)))
                logits, cdf = cache[key]
                tok = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), NUM_TOKENS - 1)
                lp += logits[tok]
                if halves_left % 2 == 1:
                    h = 1  # a chord that began at the half bar ends with the bar: changes stay on the bar grid
                else:
                    h = 1 if rng.random() < rhythm[0] else 2
                h = min(h, halves_left)
                seq.append([tok, h])
                ctx.append(tok)
                halves_left -= h
            last = seq[-1][0]
            ok = (ending == "free" or (ending == "closed" and last == tonic_tok)
                  or (ending == "open" and last in open_toks))
            score = lp / len(seq) + (0.0 if ok else -10.0)
            if score > best_lp:
                best, best_lp = seq, score
        assert best is not None
        if ending == "closed" and best[-1][0] != tonic_tok:
            best[-1][0] = tonic_tok
        elif ending == "open" and best[-1][0] not in open_toks:
            best[-1][0] = open_toks[0]
        # merge a chord repeated by the forced cadence
        merged: list[list[int]] = []
        for tok, h in best:
            if merged and merged[-1][0] == tok:
                merged[-1][1] += h
            else:
                merged.append([tok, h])
        out, t = [], start
        for tok, h in merged:
            d, q = _untoken(tok)
            out.append(PlanChord(t, t + h * HALF_BAR, d, q))
            t += h * HALF_BAR
        return out

    @staticmethod
    def plan_valence(plan: list[PlanChord]) -> float:
        """Duration-weighted brightness of a plan, in [-1.5, 1]."""
        w = np.array([c.end - c.start for c in plan], float)
        b = np.array([BRIGHTNESS[c.quality] for c in plan])
        return float((w * b).sum() / max(w.sum(), 1))

    @staticmethod
    def tokens(plan: list[PlanChord]) -> list[int]:
        return [_token(c.degree, c.quality) for c in plan]
