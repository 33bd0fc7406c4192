"""How close generated songs are to real ones: per-piece features, overlapping areas, a classifier test.

A piece is a set of tracks, each a note array of shape ``(n, 4)``: ``(start_step, duration_steps,
pitch, velocity)`` on a sixteenth-note grid (4 steps per beat, 16 per 4/4 bar), as
:func:`moodsong.corpora.pop909.load_song` gives for real songs and :func:`read_song_midi` for the MIDI
files that compose writes.

Measures (issue 12; targets there):

- **Per-piece features** (:func:`piece_features`, all tracks merged): pitch-class entropy, note
  density, polyphony, pitch range, mean inter-onset interval, scale consistency, bar repetition and
  rhythm repetition (:data:`FEATURES`), plus a few more for the classifier only
  (:data:`EXTRA_FEATURES`: dynamics, melody range, note length, register, on-beat onsets).
- **Overlapping area** (:func:`overlap`) of two samples of one feature: the area under the minimum
  of their Gaussian kernel density estimates, 1 for identical distributions, 0 for disjoint ones
  (Yang & Lerch 2018, "On the evaluation of generative models in music", Neural Computing and
  Applications 32; they apply it to distributions of pairwise distances, here it is applied to the
  per-piece feature values themselves).
- **Classifier two-sample test** (:func:`two_sample_accuracy`): a cross-validated logistic
  regression on standardised features; balanced accuracy 0.5 means it cannot tell the sets apart
  (Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample tests", ICLR), with a permutation
  p-value.
- **Chord-plan agreement** (:func:`plan_agreement`): per bar, does chord recognition
  (:func:`moodsong.representation.chords.analyze`) on the accompaniment hear the chord the plan put there?
- **Melody** (:func:`melody_monophony`, :func:`melody_range`, :func:`phrase_endings`): one voice at a
  time, a singable range, phrases that end on stable tones.

Everything is numpy + scikit-learn (+ scipy's KDE); nothing here loads a model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from moodsong.representation.chords import SCALES
from moodsong.representation.lines import top_line

__all__ = [
    "STEPS_PER_BEAT", "STEPS_PER_BAR", "FEATURES", "EXTRA_FEATURES", "CLASSIFIER_FEATURES",
    "read_song_midi", "midi_key", "crop", "merge", "piece_features", "feature_matrix",
    "overlap", "overlaps", "two_sample_accuracy",
    "parse_chord_symbol", "chord_family", "chords_agree", "plan_of_chords", "BarAgreement",
    "compare_plan", "plan_agreement",
    "melody_monophony", "melody_range", "phrase_endings",
]

STEPS_PER_BEAT = 4
STEPS_PER_BAR = 16

#: The features whose distributions are compared by overlapping area (issue 12), in this order.
FEATURES = (
    "pitch_class_entropy",   # bits, of the note-count histogram over the 12 pitch classes
    "note_density",          # notes per bar
    "polyphony",             # mean notes sounding over the steps where at least one sounds
    "pitch_range",           # semitones, highest minus lowest pitch
    "mean_ioi",              # beats between successive distinct onset steps
    "scale_consistency",     # best fraction of notes inside one of the 24 major / natural-minor scales
    "bar_repetition",        # mean over bars of the best Jaccard similarity of (onset position, pitch) sets
    "rhythm_repetition",     # the same with onset positions only
)
#: Extra features the classifier sees too.
EXTRA_FEATURES = (
    "velocity_mean",         # MIDI velocity 0..127
    "velocity_std",
    "melody_range",          # semitones, of the melody track (the top voice when there is none)
    "mean_duration",         # beats
    "mean_pitch",            # MIDI pitch number
    "onbeat_fraction",       # fraction of onsets on a beat (step % 4 == 0)
)
CLASSIFIER_FEATURES = FEATURES + EXTRA_FEATURES

Notes = np.ndarray
Tracks = Mapping[str, np.ndarray]


# ---------------------------------------------------------------------------
# Reading and shaping pieces


def _empty() -> np.ndarray:
    return np.zeros((0, 4), np.int64)


def _sorted(notes: np.ndarray) -> np.ndarray:
    notes = np.asarray(notes, np.int64).reshape(-1, 4)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def _tracks_of(score) -> dict[str, np.ndarray]:
    """Pitched tracks of a symusic Score (tick time) as note arrays on the step grid (see :func:`read_song_midi`)."""
    per_step = STEPS_PER_BEAT / score.ticks_per_quarter
    tracks: dict[str, list[np.ndarray]] = {}
    for i, track in enumerate(score.tracks):
        if track.is_drum:
            continue
        name = track.name.strip() or f"track{i}"
        a = track.notes.numpy()
        start = np.round(a["time"] * per_step).astype(np.int64)
        end = np.round((a["time"] + a["duration"]) * per_step).astype(np.int64)
        notes = np.stack([start, np.maximum(end - start, 1), a["pitch"].astype(np.int64) & 0x7F,
                          a["velocity"].astype(np.int64) & 0x7F], axis=1) if len(a["time"]) else _empty()
        tracks.setdefault(name, []).append(notes)
    return {name: _sorted(np.concatenate(parts)) for name, parts in tracks.items()}


def read_song_midi(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """Tracks and chord plan of a MIDI file, on the sixteenth-note grid.

    Parameters
    ----------
    path : path to a MIDI file
        As compose writes it: tracks named ``"Melody"``, ``"Accompaniment"`` (maybe ``"Bass"``), and
        the plan's chord symbols as MIDI markers at the tick where each chord starts.

    Returns
    -------
    tracks : dict of str to ndarray of int, shape (n, 4)
        Notes per track name, ``(start_step, duration_steps, pitch, velocity)``, sorted by start
        then pitch; ticks become steps by ``round(tick * 4 / ticks_per_quarter)`` (durations at least
        1 step). Drum tracks are left out; tracks with the same name are merged; a track without a
        name is called ``"track<i>"``.
    plan : list of (int, str)
        ``(start_step, chord symbol)`` for every marker that reads as a chord symbol
        (:func:`parse_chord_symbol`) or ``"N.C."``, in time order; other markers (section names,
        for instance) are ignored.
    """
    import symusic

    score = symusic.Score(str(path))
    per_step = STEPS_PER_BEAT / score.ticks_per_quarter
    out = _tracks_of(score)
    plan = []
    for m in score.markers:
        text = m.text.strip()
        if text.upper() in ("N.C.", "NC", "N.C", "N") or parse_chord_symbol(text) is not None:
            plan.append((int(round(m.time * per_step)), text))
    plan.sort(key=lambda p: p[0])
    return out, plan


def midi_key(path: str | os.PathLike) -> tuple[int, str] | None:
    """``(tonic pitch class, "major" | "minor")`` from a MIDI file's first key signature, None without one."""
    import symusic

    sigs = symusic.Score(str(path)).key_signatures
    if len(sigs) == 0:
        return None
    ks = sigs[0]
    minor = int(ks.tonality) == 1
    return (int(ks.key) * 7 + (9 if minor else 0)) % 12, ("minor" if minor else "major")


def merge(tracks: Tracks | Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """All notes of a piece in one array, sorted by start then pitch."""
    if isinstance(tracks, np.ndarray):
        return _sorted(tracks)
    parts = list(tracks.values()) if isinstance(tracks, Mapping) else list(tracks)
    parts = [np.asarray(p, np.int64).reshape(-1, 4) for p in parts]
    return _sorted(np.concatenate(parts)) if parts else _empty()


def crop(arrays, bars: int = 32):
    """The first ``bars`` bars of a piece: notes starting before the crop end, durations clipped at it.

    Parameters
    ----------
    arrays : ndarray (n, 4), or a dict or list of them
    bars : int
        Length in 4/4 bars (16 steps each), counted from step 0.

    Returns
    -------
    The same kind of object as ``arrays``.
    """
    end = bars * STEPS_PER_BAR

    def one(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.int64).reshape(-1, 4)
        a = a[(a[:, 0] < end) & (a[:, 0] >= 0)].copy()
        a[:, 1] = np.minimum(a[:, 1], end - a[:, 0])
        return a

    if isinstance(arrays, Mapping):
        return {k: one(v) for k, v in arrays.items()}
    if isinstance(arrays, np.ndarray):
        return one(arrays)
    return [one(a) for a in arrays]


# ---------------------------------------------------------------------------
# Per-piece features


_MAJOR = np.array(SCALES["major"])
_MINOR = np.array(SCALES["minor"])
#: The 24 scales as (24, 12) boolean masks: 12 major, then 12 natural minor.
_SCALES = np.zeros((24, 12), bool)
for _t in range(12):
    _SCALES[_t, (_MAJOR + _t) % 12] = True
    _SCALES[12 + _t, (_MINOR + _t) % 12] = True


def _sounding(notes: np.ndarray) -> np.ndarray:
    """Number of notes sounding at every step from 0 to the last note end."""
    if len(notes) == 0:
        return np.zeros(0, np.int64)
    start = np.maximum(notes[:, 0], 0)
    end = np.maximum(notes[:, 0] + np.maximum(notes[:, 1], 1), start + 1)
    delta = np.zeros(int(end.max()) + 1, np.int64)
    np.add.at(delta, start, 1)
    np.add.at(delta, end, -1)
    return np.cumsum(delta)[:-1]


def _bar_repetition(notes: np.ndarray, with_pitch: bool) -> float:
    """Mean over non-empty bars of the best Jaccard similarity of the bar's onset set to another bar's."""
    bar = notes[:, 0] // STEPS_PER_BAR
    pos = notes[:, 0] % STEPS_PER_BAR
    key = pos * 128 + notes[:, 2] if with_pitch else pos
    bars, row = np.unique(bar, return_inverse=True)
    if len(bars) < 2:
        return 0.0
    sets = np.zeros((len(bars), STEPS_PER_BAR * 128 if with_pitch else STEPS_PER_BAR), np.float64)
    sets[row, key] = 1.0
    inter = sets @ sets.T
    size = sets.sum(1)
    jac = inter / (size[:, None] + size[None, :] - inter)
    np.fill_diagonal(jac, -1.0)
    return float(jac.max(1).mean())


def _top_voice(notes: np.ndarray) -> np.ndarray:
    """Highest note at each onset step (a skyline melody)."""
    return notes[top_line(notes[:, 0], notes[:, 2])]


def _find_melody(tracks: Tracks) -> np.ndarray | None:
    for name, notes in tracks.items():
        if name.strip().lower() == "melody":
            return np.asarray(notes, np.int64).reshape(-1, 4)
    return None


def piece_features(tracks: Tracks | np.ndarray, melody: np.ndarray | None = None) -> dict[str, float]:
    """The features of :data:`CLASSIFIER_FEATURES` for one piece (all tracks merged).

    Parameters
    ----------
    tracks : dict of str to ndarray (n, 4), or one ndarray
        The piece's notes on the sixteenth-note grid.
    melody : ndarray (n, 4), optional
        The melody, for ``melody_range``; default: the track named "melody" (any case), else the top
        voice of the merged notes.

    Returns
    -------
    dict of str to float
        NaN for every feature of an empty piece. Units: ``pitch_class_entropy`` in bits (0..log2 12),
        ``note_density`` notes per bar over the bars from the first onset's to the last onset's,
        ``polyphony`` notes, ``pitch_range``/``melody_range`` semitones, ``mean_ioi``/``mean_duration``
        beats, the rest fractions or MIDI units. ``bar_repetition``/``rhythm_repetition`` are 0 for a
        piece with fewer than two non-empty bars; ``mean_ioi`` is 0 when all onsets fall on one step.
    """
    if melody is None and isinstance(tracks, Mapping):
        melody = _find_melody(tracks)
    notes = merge(tracks)
    if len(notes) == 0:
        return {k: float("nan") for k in CLASSIFIER_FEATURES}
    onsets = notes[:, 0]
    pitch = notes[:, 2]
    pc = np.bincount(pitch % 12, minlength=12).astype(float)
    p = pc[pc > 0] / pc.sum()
    n_bars = int(onsets.max() // STEPS_PER_BAR - onsets.min() // STEPS_PER_BAR + 1)
    sounding = _sounding(notes)
    uniq = np.unique(onsets)
    if melody is None or len(melody) == 0:
        melody = _top_voice(notes)
    return {
        "pitch_class_entropy": float(-(p * np.log2(p)).sum()),
        "note_density": len(notes) / n_bars,
        "polyphony": float(sounding[sounding > 0].mean()),
        "pitch_range": float(pitch.max() - pitch.min()),
        "mean_ioi": float(np.diff(uniq).mean() / STEPS_PER_BEAT) if len(uniq) > 1 else 0.0,
        "scale_consistency": float((_SCALES @ pc).max() / pc.sum()),
        "bar_repetition": _bar_repetition(notes, with_pitch=True),
        "rhythm_repetition": _bar_repetition(notes, with_pitch=False),
        "velocity_mean": float(notes[:, 3].mean()),
        "velocity_std": float(notes[:, 3].std()),
        "melody_range": float(melody[:, 2].max() - melody[:, 2].min()),
        "mean_duration": float(notes[:, 1].mean() / STEPS_PER_BEAT),
        "mean_pitch": float(pitch.mean()),
        "onbeat_fraction": float(np.mean(onsets % STEPS_PER_BEAT == 0)),
    }


def feature_matrix(features: Sequence[Mapping[str, float]], names: Sequence[str] = FEATURES) -> np.ndarray:
    """Rows of :func:`piece_features` dicts as an array ``(pieces, len(names))``."""
    return np.array([[f[n] for n in names] for f in features], float).reshape(len(features), len(names))


# ---------------------------------------------------------------------------
# Overlapping area


def _density(x: np.ndarray, grid: np.ndarray, floor_bw: float):
    """Gaussian KDE of ``x`` on ``grid`` (Scott's rule); a fixed narrow kernel when x is (nearly) constant."""
    from scipy.stats import gaussian_kde

    if len(x) >= 2 and np.std(x) > floor_bw:
        try:
            return gaussian_kde(x)(grid)
        except (np.linalg.LinAlgError, ValueError):
            pass
    z = (grid[:, None] - x[None, :]) / floor_bw
    return np.exp(-0.5 * z * z).mean(1) / (floor_bw * np.sqrt(2 * np.pi))


def overlap(a: Sequence[float], b: Sequence[float], points: int = 2048) -> float:
    """Overlapping area of the distributions of two samples of one feature.

    Each sample's density is a Gaussian kernel density estimate (:class:`scipy.stats.gaussian_kde`,
    Scott's bandwidth); OA = integral of ``min(p, q)`` over a common grid that extends 4 bandwidths
    past both samples (trapezoid rule). A constant (or single-value) sample, where a KDE is
    undefined, gets a narrow Gaussian kernel of width 1 % of the pooled spread (or of
    ``max(1, |value|)`` when both samples are one and the same constant). Non-finite values are
    dropped.

    Returns
    -------
    float
        In [0, 1]: 1 for identical distributions, 0 for disjoint ones; NaN if a sample is empty.
    """
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    pooled = np.concatenate([a, b])
    spread = float(np.std(pooled))
    floor_bw = 0.01 * (spread if spread > 0 else max(1.0, float(np.abs(pooled).max())))
    bw = floor_bw
    for x in (a, b):
        if len(x) >= 2 and np.std(x) > floor_bw:
            bw = max(bw, float(np.std(x, ddof=1)) * len(x) ** -0.2)  # Scott's factor for 1-D
    grid = np.linspace(pooled.min() - 4 * bw, pooled.max() + 4 * bw, points)
    p = _density(a, grid, floor_bw)
    q = _density(b, grid, floor_bw)
    area = np.trapezoid(np.minimum(p, q), grid) if hasattr(np, "trapezoid") else np.trapz(np.minimum(p, q), grid)
    return float(np.clip(area, 0.0, 1.0))


def overlaps(real: np.ndarray, gen: np.ndarray, names: Sequence[str] = FEATURES) -> dict[str, float]:
    """:func:`overlap` per feature column of two feature matrices, plus ``"mean"`` over them."""
    out = {n: overlap(real[:, i], gen[:, i]) for i, n in enumerate(names)}
    out["mean"] = float(np.nanmean([out[n] for n in names]))
    return out


# ---------------------------------------------------------------------------
# Classifier two-sample test


def _cv_accuracy(X: np.ndarray, y: np.ndarray, folds: int, repeats: int, seed: int) -> float:
    """Mean balanced accuracy of a standardised logistic regression over repeated stratified k-fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold

    scores = []
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for train, test in cv.split(X, y):
        mu, sd = X[train].mean(0), X[train].std(0)
        sd[sd == 0] = 1.0
        # newton-cholesky reaches the same optimum as lbfgs here, ~10x faster on a few dozen features
        clf = LogisticRegression(C=1.0, class_weight="balanced", solver="newton-cholesky", max_iter=200)
        clf.fit((X[train] - mu) / sd, y[train])
        pred = clf.predict((X[test] - mu) / sd)
        scores.append(0.5 * (np.mean(pred[y[test] == 0] == 0) + np.mean(pred[y[test] == 1] == 1)))
    return float(np.mean(scores))


def two_sample_accuracy(real_feats: np.ndarray, gen_feats: np.ndarray, *, folds: int = 5, repeats: int = 5,
                        permutations: int = 100, seed: int = 0) -> tuple[float, float]:
    """Can a classifier tell generated pieces from real ones? Cross-validated accuracy and p-value.

    Features are standardised (on each training fold) and fed to an L2 logistic regression
    (C = 1, classes weighted by their size); the score is the balanced accuracy (mean recall of the
    two classes, so chance is 0.5 even when the samples differ in size) averaged over
    ``repeats`` x stratified ``folds``-fold cross-validation. The p-value is that of a permutation
    test: the same score for ``permutations`` random relabellings of the pooled pieces,
    ``p = (1 + #{perm >= observed}) / (1 + permutations)``.

    Parameters
    ----------
    real_feats, gen_feats : ndarray (pieces, features)
        Rows with a non-finite value are dropped.
    folds, repeats, permutations, seed : int

    Returns
    -------
    (accuracy, p) : (float, float)
        Accuracy in [0, 1], 0.5 = indistinguishable; p in (0, 1] (1.0 when ``permutations`` is 0).
    """
    real_feats = np.asarray(real_feats, float)
    gen_feats = np.asarray(gen_feats, float)
    real_feats = real_feats[np.isfinite(real_feats).all(1)]
    gen_feats = gen_feats[np.isfinite(gen_feats).all(1)]
    k = min(folds, len(real_feats), len(gen_feats))
    if k < 2:
        raise ValueError(f"two_sample_accuracy needs at least 2 pieces per sample, got {len(real_feats)} and "
                         f"{len(gen_feats)}")
    X = np.vstack([real_feats, gen_feats])
    y = np.r_[np.zeros(len(real_feats), int), np.ones(len(gen_feats), int)]
    acc = _cv_accuracy(X, y, k, repeats, seed)
    if permutations <= 0:
        return acc, 1.0
    rng = np.random.default_rng(seed)
    null = [_cv_accuracy(X, rng.permutation(y), k, repeats, seed + 1 + i) for i in range(permutations)]
    p = (1 + sum(v >= acc for v in null)) / (1 + permutations)
    return acc, float(p)


# ---------------------------------------------------------------------------
# Chord-plan agreement

_ROOTS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SYMBOL = re.compile(r"^([A-Ga-g])([#b♯♭-]*)(.*)$")
_NO_CHORD = ("N.C.", "NC", "N.C", "N")


def parse_chord_symbol(name: str) -> tuple[int, str] | None:
    """``"Bbmaj7"`` -> ``(10, "maj7")``: root pitch class and suffix; None for "N.C." or not a chord symbol.

    Accidentals ``#``/``♯`` and ``b``/``♭``/``-`` (music21's flat) follow the letter; a slash bass
    (``"C/E"``) is dropped.
    """
    name = name.strip()
    if not name or name.upper() in _NO_CHORD:
        return None
    m = _SYMBOL.match(name.split("/", 1)[0])
    if m is None:
        return None
    letter, acc, suffix = m.groups()
    if chord_family(suffix) is None:
        return None
    pc = _ROOTS[letter.upper()] + sum(1 if c in "#♯" else -1 for c in acc)
    return pc % 12, suffix


def chord_family(suffix: str) -> str | None:
    """Triad family of a chord suffix: ``"major"``, ``"minor"``, ``"dim"``, ``"aug"``, ``"sus"`` or None.

    - major-like: ``""``, ``"7"``, ``"maj7"``, ``"6"``, ``"9"``, ``"add9"``, ``"M7"``, ... (a major third)
    - minor-like: ``"m"``, ``"m7"``, ``"m6"``, ``"min"``, ``"mmaj7"``, ... (a minor third, perfect fifth)
    - diminished: ``"o"``, ``"dim"``, ``"ø7"``, ``"m7b5"``, ``"o7"``, ``"°"``
    - augmented: ``"+"``, ``"aug"``
    - suspended: anything with ``"sus"`` (no third; :func:`chords_agree` lets it match major or minor)

    None when the suffix is not recognised (so the name is not read as a chord symbol).
    """
    s = suffix.strip().replace("(", "").replace(")", "")
    low = s.lower()
    if "sus" in low:
        return "sus"
    if s.startswith(("o", "°", "ø", "dim")) or "m7b5" in low or "min7b5" in low:
        return "dim"
    if s.startswith(("+", "aug")):
        return "aug"
    if s.startswith(("maj", "M", "Δ")):
        return "major"
    if s.startswith(("m", "min", "-")):
        return "minor"
    if re.fullmatch(r"(add)?\d*(b|#)?\d*(add\d+)?", s):
        return "major"
    return None


def chords_agree(a: str, b: str) -> bool:
    """Same root pitch class and compatible triad family (:func:`chord_family`; sus matches major and minor).

    Two no-chords agree; a chord and a no-chord do not.
    """
    pa, pb = parse_chord_symbol(a), parse_chord_symbol(b)
    if pa is None or pb is None:
        return pa is None and pb is None
    if pa[0] != pb[0]:
        return False
    fa, fb = chord_family(pa[1]), chord_family(pb[1])
    if fa == fb:
        return True
    return {fa, fb} in ({"sus", "major"}, {"sus", "minor"})


def plan_of_chords(chords) -> list[tuple[int, str]]:
    """A POP909 song's annotated chords (:class:`moodsong.corpora.pop909.Chord`) as a plan ``[(start_step, name)]``.

    Gaps between annotated chords become ``"N.C."``.
    """
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    plan: list[tuple[int, str]] = []
    end = None
    for c in sorted(chords, key=lambda c: c.start):
        if end is not None and c.start > end:
            plan.append((end, "N.C."))
        plan.append((int(c.start), names[c.root] + c.quality))
        end = int(c.end)
    if end is not None:
        plan.append((end, "N.C."))
    return plan


def _score_of(notes: np.ndarray, ticks_per_quarter: int = 480):
    import symusic

    score = symusic.Score(ticks_per_quarter)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("Accompaniment", program=0)
    tick = ticks_per_quarter // STEPS_PER_BEAT
    for s, d, p, v in notes:
        track.notes.append(symusic.Note(int(s) * tick, max(int(d), 1) * tick, int(p), int(max(1, min(v, 127)))))
    score.tracks.append(track)
    return score


@dataclass(frozen=True)
class BarAgreement:
    """One bar of :func:`compare_plan`: the plan's chord there, the chord heard there, and whether they agree."""

    bar: int  # 0-based
    planned: str
    heard: str
    agree: bool


def compare_plan(accompaniment, plan: Sequence[tuple[int, str]], bars: int | None = None) -> list[BarAgreement]:
    """Per bar, the plan's chord that sounds longest in the bar against the chord recognised there.

    Parameters
    ----------
    accompaniment : symusic.Score, ndarray (n, 4), or dict / list of them
        The accompaniment only (a Score: all its pitched tracks are read, times rounded to the grid).
    plan : sequence of (int, str)
        ``(start_step, chord symbol)``; each chord lasts until the next (the last to the end).
    bars : int, optional
        Bars compared, from bar 0; default: up to the later of the last note end and the last plan
        start.

    Returns
    -------
    list of BarAgreement
        One per bar whose longest plan chord is a chord (bars planned as "N.C." or before the plan's
        first chord are left out). The heard chord is
        ``moodsong.representation.chords.analyze(score, per="bar").segments[bar].name`` ("N.C." where silent).
    """
    from moodsong.representation.chords import analyze

    if not isinstance(accompaniment, (np.ndarray, Mapping, list, tuple)):  # a symusic.Score
        if "tick" not in str(getattr(accompaniment, "ttype", "tick")).lower():
            accompaniment = accompaniment.to("tick")
        accompaniment = _tracks_of(accompaniment)
    notes = merge(accompaniment)
    plan = sorted((int(s), str(n)) for s, n in plan)
    if bars is None:
        last = max(int((notes[:, 0] + notes[:, 1]).max()) if len(notes) else 0, plan[-1][0] + 1 if plan else 0)
        bars = -(-last // STEPS_PER_BAR)
    if bars <= 0 or not plan:
        return []
    starts = np.array([s for s, _ in plan] + [bars * STEPS_PER_BAR])
    segs = analyze(_score_of(notes), per="bar").segments if len(notes) else []
    out = []
    for b in range(bars):
        lo, hi = b * STEPS_PER_BAR, (b + 1) * STEPS_PER_BAR
        cover = np.clip(np.minimum(starts[1:], hi) - np.maximum(starts[:-1], lo), 0, None)
        if cover.max() <= 0:
            continue
        planned = plan[int(np.argmax(cover))][1]
        if parse_chord_symbol(planned) is None:
            continue
        heard = segs[b].name if b < len(segs) and segs[b].root is not None else "N.C."
        out.append(BarAgreement(b, planned, heard, chords_agree(planned, heard)))
    return out


def plan_agreement(accompaniment, plan: Sequence[tuple[int, str]], bars: int | None = None) -> float:
    """Fraction of planned bars where chord recognition on the accompaniment agrees with the plan.

    See :func:`compare_plan` (arguments) and :func:`chords_agree` (what agreeing means: same root,
    same triad family). NaN when no bar has a planned chord.
    """
    rows = compare_plan(accompaniment, plan, bars)
    return float(np.mean([r.agree for r in rows])) if rows else float("nan")


# ---------------------------------------------------------------------------
# Melody


def melody_monophony(melody: np.ndarray) -> float:
    """Fraction of steps with at most one melody note sounding, over the steps where any sounds (NaN if none)."""
    sounding = _sounding(np.asarray(melody, np.int64).reshape(-1, 4))
    active = sounding > 0
    return float(np.mean(sounding[active] <= 1)) if active.any() else float("nan")


def melody_range(melody: np.ndarray) -> float:
    """Highest minus lowest melody pitch, in semitones (NaN for no notes)."""
    melody = np.asarray(melody, np.int64).reshape(-1, 4)
    return float(melody[:, 2].max() - melody[:, 2].min()) if len(melody) else float("nan")


def phrase_endings(melody: np.ndarray, *, tonic: int, mode: str, plan: Sequence[tuple[int, str]] | None = None,
                   rest_steps: int = 2 * STEPS_PER_BEAT, section_ends: Sequence[int] = (),
                   final_is_end: bool = True, by: str = "rest") -> dict[str, float]:
    """Do the melody's phrases end on stable tones?

    A phrase-final note is a melody note followed by a rest of at least ``rest_steps`` (default 2
    beats) before the next onset (``by="rest"``; with ``by="ioi"``: whose next onset comes at least
    ``rest_steps`` after its own, a long note or a rest), the last note starting before each step of
    ``section_ends``, and (``final_is_end``) the last note of the melody. Leave ``final_is_end`` off
    for a crop out of a longer song, whose last note need not end anything.

    POP909's performed melodies hold their notes into the breath: in the first 32 bars of its test
    songs there are ~0.7 rests of 2 beats or more per song, but ~7 notes whose next onset is 2 beats
    or more away; ``by="ioi"`` finds those phrase ends.

    Parameters
    ----------
    melody : ndarray (n, 4)
    tonic : int
        Tonic pitch class of the key (0 = C).
    mode : {"major", "minor"}
    plan : sequence of (int, str), optional
        ``(start_step, chord symbol)``; the chord under most of a note's duration gives its chord tones
        (the triad of its family: major, minor, diminished, augmented; a sus chord's root, 4th/2nd and
        5th).
    rest_steps : int
        Shortest rest, in steps, that ends a phrase.
    section_ends : sequence of int
        Steps where sections end.
    final_is_end : bool
    by : {"rest", "ioi"}

    Returns
    -------
    dict
        ``phrases`` (count), ``tonic_triad`` (fraction of phrase ends on the tonic triad of the key),
        ``chord_tone`` (fraction on a tone of the plan's chord; NaN without a plan) and ``stable``
        (on either). Fractions are NaN when there are no phrase ends.
    """
    melody = _sorted(melody)
    nan = float("nan")
    if len(melody) == 0:
        return {"phrases": 0, "tonic_triad": nan, "chord_tone": nan, "stable": nan}
    # one note per onset: the highest, should the melody have chords
    mel = _top_voice(melody)
    end = mel[:, 0] + mel[:, 1]
    final = np.zeros(len(mel), bool)
    if by not in ("rest", "ioi"):
        raise ValueError(f"by must be 'rest' or 'ioi', not {by!r}")
    final[:-1] = mel[1:, 0] - (end[:-1] if by == "rest" else mel[:-1, 0]) >= rest_steps
    if final_is_end:
        final[-1] = True
    for s in section_ends:
        i = int(np.searchsorted(mel[:, 0], s, side="left")) - 1
        if i >= 0:
            final[i] = True
    ends = mel[final]
    third = 3 if mode == "minor" else 4
    triad = {tonic % 12, (tonic + third) % 12, (tonic + 7) % 12}
    on_triad = np.array([p % 12 in triad for p in ends[:, 2]])
    on_chord = np.full(len(ends), False)
    have_plan = bool(plan)
    if have_plan:
        plan = sorted((int(s), str(n)) for s, n in plan)
        bounds = np.array([s for s, _ in plan] + [np.iinfo(np.int64).max])
        shapes = {"major": (0, 4, 7), "minor": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8), "sus": (0, 2, 5, 7)}
        for j, (s, d, p) in enumerate(zip(ends[:, 0], ends[:, 1], ends[:, 2])):
            # the chord under most of the note (a phrase end often anticipates the next chord)
            cover = np.minimum(bounds[1:], s + max(d, 1)) - np.maximum(bounds[:-1], s)
            i = int(np.argmax(cover)) if cover.max() > 0 else -1
            parsed = parse_chord_symbol(plan[i][1]) if i >= 0 else None
            if parsed is not None:
                tones = {(parsed[0] + k) % 12 for k in shapes[chord_family(parsed[1])]}
                on_chord[j] = p % 12 in tones
    n = len(ends)
    return {
        "phrases": int(n),
        "tonic_triad": float(on_triad.mean()) if n else nan,
        "chord_tone": float(on_chord.mean()) if n and have_plan else nan,
        "stable": float((on_triad | on_chord).mean()) if n else nan,
    }
