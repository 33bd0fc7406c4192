"""Music -> emotion: estimate a piece's valence, arousal and Russell quadrant from its notes.

The estimator reads interpretable surface features that music psychology ties
to perceived emotion, then applies logistic models learned from human labels
(EMOPIA, 990 pop-piano clips labelled by quadrant):

- **mode and key clarity**: correlation of the duration-weighted pitch-class
  histogram with the 24 Krumhansl-Kessler key profiles (best major vs best
  minor key), and the share of major vs minor triads among sounding chords;
- **tempo / density**: note onsets and chord onsets per second;
- **register**: mean, spread and range of pitch, mean bass pitch;
- **articulation**: note duration relative to the inter-onset interval (legato
  vs staccato), mean note duration;
- **dynamics**: mean and spread of MIDI velocity;
- **dissonance**: share of semitone/tritone intervals among simultaneous notes;
- **texture**: mean polyphony, pitch-class entropy;
- **key-relative harmony** (for valence): scale-degree shares above the tonic of
  the piece's diatonic collection, chord qualities and diatonic functions of
  0.5 s windows, the third above the bass, the mode of the opening and the
  cadence, and the mode of 4-16 s windows (pieces borrow and modulate);
- **melody and rhythm**: top-voice intervals and degrees, inter-onset spread.

All times are in seconds (taken through the score's tempo map), so a piece
written at 70 qpm and one at 140 qpm with the same notes differ in density,
as a listener hears them.

Logistic heads are fitted on standardised features: binary valence (Q1, Q4 vs
Q2, Q3) and arousal (Q1, Q2 vs Q3, Q4) heads, and a 4-way quadrant softmax.
Boosted trees (:meth:`MusicEmotionEstimator.fit_trees`, scored in numpy by
:func:`tree_logit`) are averaged with the binary heads. Continuous
valence/arousal in [-1, 1] are ``2 p - 1`` of the binary heads; the quadrant
probabilities are their product (or the softmax, for older models). The fitted
model is about 25 kB of JSON plus the trees (safetensors) in ``moodsong/data``.

Valence should not depend on how a piece was played or entered, so the valence
head also learns from score-like versions of the clips (:func:`plain_version`:
quantised, one velocity, other tempo, key and voicing) and from POP909 songs
whose annotated key is a weak label (:func:`pop909_songs`), and from melody-only versions of both
(:func:`melody_version`). Music that is not a played performance (a notated score, a quantised file,
a lone melody) has a valence expert of its own (:meth:`MusicEmotionEstimator.fit_score_expert`), weighed
by a gate that tells performances from scores. ``bench/music_emotion_proxy.py`` checks material none of
them learnt: score-like and melody-only EMOPIA valid clips, POP909 valid songs and four collections of
music21's corpus against their mode.

Optionally (and in the shipped model) a small temporal CNN over frame features
(:mod:`moodsong.emotion.music_cnn`) hears how the music moves; when a piece's
notes are given (``predict_notes`` / ``predict_score`` / ``predict_file`` /
``predict_pieces``), its quadrant probabilities are blended with the feature
model's (weight ``sequence_weight``). ``predict_features`` / ``score`` read the
feature heads only, since a feature row has no notes in it.

Example
-------
>>> est = MusicEmotionEstimator.load_default()        # doctest: +SKIP
>>> est.predict_file("song.mid")                      # doctest: +SKIP
MusicEmotion(valence=0.41, arousal=-0.32, quadrant=4, ...)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import symusic

from moodsong.errors import MoodsongError
from moodsong.fileio import write_text_atomic
from moodsong.representation.chords import key_of_histogram
from moodsong.representation.lines import top_line
from moodsong.representation.pianoroll import read_score

__all__ = [
    "DEFAULT_MODEL",
    "FEATURE_NAMES",
    "MusicEmotion",
    "MusicEmotionEstimator",
    "NoteArrays",
    "emopia_clips",
    "emopia_song",
    "key_estimate",
    "melody_version",
    "music_features",
    "note_windows",
    "plain_version",
    "pop909_songs",
    "random_plain_version",
    "score_notes",
    "song_folds",
]

#: File name of the shipped estimator inside ``moodsong/data``.
DEFAULT_MODEL = "music_emotion.json"

# Krumhansl-Kessler probe-tone profiles (C major / C minor), the standard key-finding weights.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# The 24 key profiles (rows 0..11 major, 12..23 minor, by tonic), centred and scaled to unit norm once.
_KEY_PROFILES = np.stack([np.roll(_KK_MAJOR, k) for k in range(12)] + [np.roll(_KK_MINOR, k) for k in range(12)])
_KEY_PROFILES = _KEY_PROFILES - _KEY_PROFILES.mean(1, keepdims=True)
_KEY_PROFILES = _KEY_PROFILES / np.linalg.norm(_KEY_PROFILES, axis=1, keepdims=True)
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Chord templates (intervals above the root) matched against 0.5 s pitch-class windows.
_CHORD_TEMPLATES = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8), "sus4": (0, 5, 7),
    "dom7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10),
}
_MAJOR_LIKE = ("maj", "aug", "dom7", "maj7")
_MINOR_LIKE = ("min", "min7")
# Diatonic triads: (name, root in semitones above the relative major's tonic, template qualities).
_FUNCTIONS = (("I", 0, ("maj", "maj7")), ("ii", 2, ("min", "min7")), ("iii", 4, ("min", "min7")),
              ("IV", 5, ("maj", "maj7")), ("V", 7, ("maj", "dom7")), ("vi", 9, ("min", "min7")))

FEATURE_NAMES = (
    "major_r",  # best correlation with a major key profile
    "minor_r",  # best correlation with a minor key profile
    "mode",  # major_r - minor_r: > 0 reads as major
    "key_clarity",  # best key r minus the second best
    "triad_major_share",  # major / (major + minor) triads among chord frames
    "onsets_per_s",
    "chord_onsets_per_s",  # distinct onset times per second
    "pitch_mean",
    "pitch_std",
    "pitch_range",  # 95th - 5th percentile, semitones
    "bass_mean",  # mean lowest pitch per chord frame
    "log_duration",  # mean log note duration (seconds)
    "legato",  # median duration / inter-onset interval, clipped
    "velocity_mean",
    "velocity_std",
    "dissonance",  # share of ic1 + ic6 among simultaneous intervals
    "polyphony",  # mean notes sounding at a chord onset
    "pc_entropy",  # pitch-class entropy, bits
) + (
    # Harmony, key-relative. "degree_k" is the duration-weighted share of the pitch class k semitones above
    # the tonic of the piece's diatonic collection (the relative major's tonic), so a major piece weighs
    # degree 0 (do) and a minor one degree 9 (la) with the same seven degrees in use.
    *(f"degree_{k}" for k in range(12)),
    "chromatic_share",  # duration share outside the diatonic collection
    "la_minus_do",  # degree_9 - degree_0: the minor vs major tonic
    "minor_key",  # 1 if the best of the 24 keys is minor
    "relative_mode_margin",  # r(relative major) - r(relative minor) of the key profiles
    # Chords: 0.5 s windows matched to 8 chord templates on 12 roots (velocity x duration weighted shares).
    *(f"chord_{q}" for q in _CHORD_TEMPLATES),
    "chord_minor_share",  # minor (incl. min7) / (minor + major-type) chords
    *(f"function_{f}" for f, _, _ in _FUNCTIONS),  # diatonic triads by scale step, quality-consistent
    "vi_minus_I",
    "chord_fit",  # mean cosine of the best template: how triadic the harmony is
    "bass_m3_minus_M3",  # minor vs major third above the bass
    "bass_la_minus_do",  # bass on the minor vs the major tonic
    "start_mode",  # major_r - minor_r over the first 2 s
    "end_mode",  # ... and the last 2 s (the cadence)
    "end_bass_la_minus_do",
    "local_minor_share",  # share of 8 s windows whose best key is minor
    *(f"local_mode_{w}s_{s}" for w in (4, 8, 16) for s in ("mean", "weighted", "min", "max")),
    "velocity_weighted_mode",  # mode of the velocity x duration pitch-class histogram
    # Melody: the top voice of the onset clusters.
    "melody_abs_interval",  # mean |interval|, semitones
    "melody_up",  # share of rising steps
    "melody_step",  # share of 1-2 semitone moves
    "melody_leap",  # share of moves >= 5 semitones
    "melody_m3",
    "melody_M3",
    "melody_semitone",
    "melody_la_minus_do",
    "melody_mi_minus_do",
    # Rhythm, dynamics, register.
    "ioi_log_std",  # spread of log inter-onset intervals
    "ioi_short",  # share of inter-onset intervals < 0.15 s
    "ioi_long",  # ... > 0.75 s
    "velocity_range",  # 95th - 5th percentile
    "pitch_high",  # 95th percentile
    "pitch_low",  # 5th percentile
)


@dataclass
class NoteArrays:
    """Notes of a piece in seconds.

    Attributes
    ----------
    onset, duration : numpy.ndarray
        Seconds, float64.
    pitch, velocity : numpy.ndarray
        MIDI numbers 0..127, int64.
    """

    onset: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return int(self.onset.size)


def score_notes(score: symusic.Score) -> NoteArrays:
    """All non-drum notes of a symusic score, with times in seconds through its tempo map."""
    sec = score.to("second")
    parts = [t.notes.numpy() for t in sec.tracks if not t.is_drum and len(t.notes)]
    if not parts:
        z = np.zeros(0)
        return NoteArrays(z, z, z.astype(np.int64), z.astype(np.int64))
    def cat(k):
        return np.concatenate([p[k] for p in parts])
    order = np.argsort(cat("time"), kind="stable")
    return NoteArrays(
        cat("time").astype(np.float64)[order],
        np.maximum(cat("duration").astype(np.float64)[order], 1e-3),
        cat("pitch").astype(np.int64)[order],
        cat("velocity").astype(np.int64)[order],
    )


def plain_version(notes: NoteArrays, *, tempo: float = 1.0, grid: float = 0.125, velocity: int = 80,
                  shift: int = 0, revoice: int = 0) -> NoteArrays:
    """A score-like rendering of a performance: what a piece from another source often looks like.

    EMOPIA's clips are transcribed performances (free timing, played dynamics). Music from other
    domains (game and film scores, hand-entered MIDI) is often quantised with one velocity. The
    listener's valence does not change with that, so the estimator is trained on these versions too
    (valence head) and checked on them (``bench/music_emotion_proxy.py``).

    Parameters
    ----------
    notes : NoteArrays
    tempo : float
        Time stretch (1.25 = 25 % slower).
    grid : float
        Onsets and durations are snapped to this many seconds (0.125 s: a sixteenth at 120 qpm,
        EMOPIA's nominal tempo); a duration is at least one grid step.
    velocity : int
        Every note's velocity.
    shift : int
        Transposition in semitones.
    revoice : int
        Semitones added to the notes below the piece's median pitch (+-12 re-voices the accompaniment
        an octave up or down). The result is moved by octaves into the piano's range 21..108.
    """
    on = (notes.onset - notes.onset.min()) * tempo
    on = np.round(on / grid) * grid
    du = np.maximum(np.round(notes.duration * tempo / grid), 1) * grid
    p = notes.pitch + shift
    if revoice and p.size:
        p = np.where(p < np.median(p), p + revoice, p)
    while p.size and p.min() < 21 and p.max() <= 96:
        p = p + 12
    while p.size and p.max() > 108 and p.min() >= 33:
        p = p - 12
    p = np.clip(p, 0, 127)
    order = np.lexsort((p, on))
    return NoteArrays(on[order], du[order], p[order].astype(np.int64), np.full(p.size, int(velocity), np.int64))


def random_plain_version(notes: NoteArrays, rng: np.random.Generator) -> NoteArrays:
    """:func:`plain_version` with drawn settings: tempo x0.8-1.25, one velocity 50-110, transposition
    -6..+5, accompaniment re-voiced an octave down or up (one in three each) or kept."""
    return plain_version(notes, tempo=float(rng.uniform(0.8, 1.25)), velocity=int(rng.integers(50, 111)),
                         shift=int(rng.integers(-6, 6)), revoice=int(rng.choice((-12, 0, 12))))


def melody_version(notes: NoteArrays, tolerance: float = 0.05) -> NoteArrays:
    """The top line of a piece (:func:`~moodsong.representation.lines.top_line`), each note held until
    the next: what a lead sheet, a folk tune or a melody-only MIDI file looks like.

    A lone melody is as happy or sad as the piece it comes from, but a model of pop piano reads one as
    sparse and thin, i.e. sad; the valence heads learn from these versions too (issue 14).

    Parameters
    ----------
    notes : NoteArrays
    tolerance : float
        Seconds within which notes count as struck together (a played chord is rarely exact).
    """
    k = top_line(notes.onset, notes.pitch, tolerance)
    on = notes.onset[k]
    end = np.minimum(on + notes.duration[k], np.append(on[1:], np.inf))
    return NoteArrays(on, np.maximum(end - on, 1e-3), notes.pitch[k], notes.velocity[k])


def note_windows(notes: NoteArrays, seconds: float = 30.0, min_notes: int = 20) -> list[NoteArrays]:
    """Consecutive ``seconds``-long windows of a long piece (times from each window's start; notes
    cut at its end), keeping those with at least ``min_notes`` onsets. EMOPIA's clips are 18-110 s,
    so a whole song is read as clips of that size."""
    out = []
    start, last = float(notes.onset.min()), float(notes.onset.max())
    while True:
        m = (notes.onset >= start) & (notes.onset < start + seconds)
        if m.sum() >= min_notes:
            on = notes.onset[m]
            out.append(NoteArrays(on - start, np.minimum(notes.duration[m], start + seconds - on),
                                  notes.pitch[m], notes.velocity[m]))
        start += seconds
        if start > last - seconds / 2:
            return out


def _pc_histogram(notes: NoteArrays) -> np.ndarray:
    h = np.bincount(notes.pitch % 12, weights=notes.duration, minlength=12)
    return h / h.sum() if h.sum() > 0 else h


def _key_correlations(hist: np.ndarray) -> np.ndarray:
    """Pearson r of a pitch-class histogram with the 24 keys: rows 0..11 major, 12..23 minor (by tonic)."""
    h = hist - hist.mean()
    return _KEY_PROFILES @ h / (np.linalg.norm(h) + 1e-12)


def key_estimate(notes: NoteArrays) -> tuple[int, str, float]:
    """Most likely key: ``(tonic pitch class, "major"|"minor", correlation)``.

    moodsong's one key finder, :func:`moodsong.representation.chords.key_of_histogram`
    (Temperley-Kostka-Payne profiles), on the seconds-weighted histogram, so the
    steering and the chord report name the same key. The feature model keeps the
    Krumhansl-Kessler correlations (``_key_correlations``) it was trained on: they
    are features, not the reported key.
    """
    return key_of_histogram(_pc_histogram(notes))


def _chord_frames(notes: NoteArrays, hop: float = 0.25) -> list[np.ndarray]:
    """Pitches sounding at each onset cluster (onsets within ``hop`` seconds merge)."""
    if len(notes) == 0:
        return []
    starts = notes.onset
    ends = notes.onset + notes.duration
    # Cluster onsets: a new frame begins where the gap to the previous onset exceeds hop.
    cuts = np.flatnonzero(np.diff(starts) > hop) + 1
    frame_t = starts[np.concatenate([[0], cuts])]
    frames = []
    for t in frame_t:
        sounding = (starts <= t + hop) & (ends > t)
        frames.append(notes.pitch[sounding])
    return frames


def _surface_features(notes: NoteArrays) -> dict[str, float]:
    """The first 18 features: key/mode, density, register, articulation, dynamics, dissonance, texture."""
    span = max(float((notes.onset + notes.duration).max() - notes.onset.min()), 1.0)
    r = _key_correlations(_pc_histogram(notes))
    major_r, minor_r = float(r[:12].max()), float(r[12:].max())
    srt = np.sort(r)
    clarity = float(srt[-1] - srt[-2])

    frames = _chord_frames(notes)
    maj = mnr = 0
    diss = tot = 0
    bass = []
    poly = []
    for f in frames:
        poly.append(f.size)
        if f.size == 0:
            continue
        bass.append(f.min())
        pcs = np.unique(f % 12)
        s = set(pcs.tolist())
        for root in pcs:
            if (root + 4) % 12 in s and (root + 7) % 12 in s:
                maj += 1
            if (root + 3) % 12 in s and (root + 7) % 12 in s:
                mnr += 1
        if pcs.size >= 2:
            d = (pcs[:, None] - pcs[None, :]) % 12
            ic = np.minimum(d, 12 - d)[np.triu_indices(pcs.size, 1)]
            diss += int(np.sum((ic == 1) | (ic == 6)))
            tot += ic.size
    triad_share = (maj + 0.5) / (maj + mnr + 1.0)

    uniq_on = np.unique(np.round(notes.onset, 2))
    ioi = np.diff(uniq_on)
    med_ioi = float(np.median(ioi)) if ioi.size else 1.0
    legato = float(np.clip(np.median(notes.duration) / max(med_ioi, 1e-3), 0, 8))
    pc = np.bincount(notes.pitch % 12, minlength=12) / len(notes)
    ent = float(-(pc[pc > 0] * np.log2(pc[pc > 0])).sum())
    p = notes.pitch.astype(np.float64)
    v = notes.velocity.astype(np.float64)
    return dict(zip(FEATURE_NAMES[:18], [
        major_r,
        minor_r,
        major_r - minor_r,
        clarity,
        triad_share,
        len(notes) / span,
        uniq_on.size / span,
        p.mean(),
        p.std(),
        float(np.percentile(p, 95) - np.percentile(p, 5)),
        float(np.mean(bass)) if bass else p.mean(),
        float(np.log(notes.duration).mean()),
        legato,
        v.mean(),
        v.std(),
        diss / tot if tot else 0.0,
        float(np.mean(poly)) if poly else 1.0,
        ent,
    ]))


# Most numbers in one block of the notes x windows overlap matrix of :func:`_windows` (2**24: 128 MB of float64).
# A 1.4-hour piece (31k notes): features in 5.4 s with a peak of 0.6 GB, against 23 s and 7.7 GB at once.
_WINDOW_BLOCK = 2**24


def _windows(notes: NoteArrays, hop: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Pitch-class energy (velocity/64 x seconds sounding) per ``hop``-second window, shape (windows, 12),
    and the lowest sounding pitch per window (999 where silent)."""
    start, end = notes.onset, notes.onset + notes.duration
    edges = start.min() + hop * np.arange(int(np.ceil((end.max() - start.min()) / hop)) + 2)
    pc = notes.pitch % 12
    W = np.zeros((len(edges) - 1, 12))
    bass = np.full(len(edges) - 1, 999, dtype=notes.pitch.dtype)
    # Notes x windows overlaps, a block of notes at a time. Whole, the matrix of a long piece took 24 GB
    # and was killed (a folk tune with its repeats unfolded); EMOPIA's clips' features are unchanged, to the bit.
    block = max(1, _WINDOW_BLOCK // len(edges))
    for i in range(0, len(start), block):
        s, e = start[i:i + block, None], end[i:i + block, None]
        overlap = np.clip(np.minimum(e, edges[None, 1:]) - np.maximum(s, edges[None, :-1]), 0, None)
        energy = overlap * (notes.velocity[i:i + block, None] / 64.0)
        p = pc[i:i + block]
        W += np.stack([energy[p == k].sum(0) for k in range(12)], axis=1)
        bass = np.minimum(bass, np.where(overlap > 0, notes.pitch[i:i + block, None], 999).min(0))
    return W, bass


def _mode_of(hist: np.ndarray) -> float:
    """Best major minus best minor key-profile correlation of a pitch-class histogram (> 0 reads as major)."""
    r = _key_correlations(hist / max(hist.sum(), 1e-12))
    return float(r[:12].max() - r[12:].max())


_TEMPLATE_MATRIX = np.array([
    np.isin(np.arange(12), [(root + i) % 12 for i in ivs]) / np.sqrt(len(ivs))
    for ivs in _CHORD_TEMPLATES.values() for root in range(12)
])  # row = quality index * 12 + root


def _harmony_features(notes: NoteArrays) -> dict[str, float]:
    """Key-relative scale degrees, chord qualities and functions, bass, cadence and local mode."""
    hist = _pc_histogram(notes)
    r = _key_correlations(hist)
    best = int(np.argmax(r))
    minor = best >= 12
    do = (best % 12 + 3) % 12 if minor else best % 12  # tonic of the diatonic collection
    degree = np.roll(hist, -do)
    f = {f"degree_{k}": float(degree[k]) for k in range(12)}
    f["chromatic_share"] = float(1 - degree[[0, 2, 4, 5, 7, 9, 11]].sum())
    f["la_minus_do"] = float(degree[9] - degree[0])
    f["minor_key"] = float(minor)
    f["relative_mode_margin"] = float(r[do] - r[12 + (do + 9) % 12])

    W, bass = _windows(notes)
    sounding = W.sum(1) > 1e-9
    W, bass = W[sounding], bass[sounding]
    weight = W.sum(1) / W.sum()
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    match = unit @ _TEMPLATE_MATRIX.T
    best_t = match.argmax(1)
    names = list(_CHORD_TEMPLATES)
    quality = np.array(names)[best_t // 12]
    root = (best_t % 12 - do) % 12
    for q in names:
        f[f"chord_{q}"] = float(weight[quality == q].sum())
    mn, mj = weight[np.isin(quality, _MINOR_LIKE)].sum(), weight[np.isin(quality, _MAJOR_LIKE)].sum()
    f["chord_minor_share"] = float(mn / (mn + mj + 1e-9))
    for name, step, quals in _FUNCTIONS:
        f[f"function_{name}"] = float(weight[(root == step) & np.isin(quality, quals)].sum())
    f["vi_minus_I"] = f["function_vi"] - f["function_I"]
    f["chord_fit"] = float((match.max(1) * weight).sum())
    rows = np.arange(len(bass))
    f["bass_m3_minus_M3"] = float(((unit[rows, (bass + 3) % 12] - unit[rows, (bass + 4) % 12]) * weight).sum())
    bass_degree = (bass - do) % 12
    f["bass_la_minus_do"] = float(weight[bass_degree == 9].sum() - weight[bass_degree == 0].sum())
    f["start_mode"] = _mode_of(W[:4].sum(0))
    f["end_mode"] = _mode_of(W[-4:].sum(0))
    f["end_bass_la_minus_do"] = float(bass_degree[-1] == 9) - float(bass_degree[-1] == 0)
    # Local mode: pieces modulate and borrow, so the global histogram blurs major and minor passages.
    for seconds, hop in ((4, 4), (8, 8), (16, 8)):
        n = 2 * seconds  # 0.5 s windows
        chunks = [W[i : i + n].sum(0) for i in range(0, max(1, len(W) - n + 1), hop)]
        modes = np.array([_mode_of(c) for c in chunks])
        mass = np.array([c.sum() for c in chunks])
        if seconds == 8:
            f["local_minor_share"] = float(np.mean(modes < 0))
        f[f"local_mode_{seconds}s_mean"] = float(modes.mean())
        f[f"local_mode_{seconds}s_weighted"] = float((modes * mass).sum() / mass.sum())
        f[f"local_mode_{seconds}s_min"] = float(modes.min())
        f[f"local_mode_{seconds}s_max"] = float(modes.max())
    f["velocity_weighted_mode"] = _mode_of(W.sum(0))
    return f


def _melody_rhythm_features(notes: NoteArrays) -> dict[str, float]:
    """Top-voice intervals and scale degrees, inter-onset-interval spread, velocity and pitch extremes."""
    r = _key_correlations(_pc_histogram(notes))
    best = int(np.argmax(r))
    do = (best % 12 + 3) % 12 if best >= 12 else best % 12
    top = np.array([f.max() for f in _chord_frames(notes) if f.size])
    step = np.abs(np.diff(top)) if top.size > 1 else np.zeros(1, np.int64)
    rising = np.diff(top) > 0 if top.size > 1 else np.zeros(1, bool)
    degree = np.bincount((top - do) % 12, minlength=12) / max(top.size, 1)
    onsets = np.unique(np.round(notes.onset, 2))
    ioi = np.diff(onsets) if onsets.size > 1 else np.ones(1)
    return {
        "melody_abs_interval": float(step.mean()),
        "melody_up": float(rising.mean()),
        "melody_step": float(np.isin(step, (1, 2)).mean()),
        "melody_leap": float((step >= 5).mean()),
        "melody_m3": float((step == 3).mean()),
        "melody_M3": float((step == 4).mean()),
        "melody_semitone": float((step == 1).mean()),
        "melody_la_minus_do": float(degree[9] - degree[0]),
        "melody_mi_minus_do": float(degree[4] - degree[0]),
        "ioi_log_std": float(np.log(ioi).std()),
        "ioi_short": float((ioi < 0.15).mean()),
        "ioi_long": float((ioi > 0.75).mean()),
        "velocity_range": float(np.percentile(notes.velocity, 95) - np.percentile(notes.velocity, 5)),
        "pitch_high": float(np.percentile(notes.pitch, 95)),
        "pitch_low": float(np.percentile(notes.pitch, 5)),
    }


def music_features(notes: NoteArrays) -> np.ndarray:
    """The feature vector (order of :data:`FEATURE_NAMES`) of a piece's notes.

    Raises
    ------
    MoodsongError
        If the piece has fewer than 4 notes (nothing to judge).
    """
    if len(notes) < 4:
        raise MoodsongError("the piece has too few notes to estimate its emotion")
    f = {**_surface_features(notes), **_harmony_features(notes), **_melody_rhythm_features(notes)}
    return np.array([f[k] for k in FEATURE_NAMES], dtype=np.float64)


@dataclass
class MusicEmotion:
    """What the estimator hears in a piece.

    Attributes
    ----------
    valence, arousal : float
        In [-1, 1] (``2 p - 1`` of the binary heads).
    quadrant : int
        1..4, the most probable quadrant (of the blended probabilities when a sequence model is used).
    probabilities : list of float
        Quadrant probabilities Q1..Q4.
    features : dict
        The named feature values, for explanation.
    performance : float
        How much the piece looks like a played performance rather than a score or a lone melody, in
        [0, 1]: the gate between the estimator's two valence experts (1 for a model without them).
    """

    valence: float
    arousal: float
    quadrant: int
    probabilities: list[float]
    features: dict = field(default_factory=dict)
    performance: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = {k: round(float(v), 4) for k, v in self.features.items()}
        return d


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _fit_logistic(X: np.ndarray, y: np.ndarray, num_classes: int, l2: float, steps: int = 3000,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Multinomial logistic regression by full-batch gradient descent with Nesterov momentum.

    Returns weights of shape ``(features + 1, num_classes)`` (last row: bias).
    Plain numpy: the problem is tiny (hundreds of rows, ~100 features) and convex. The step is
    1 / L, L the gradient's Lipschitz bound, so it converges however correlated the features are
    (a fixed step diverged once the harmony features, many of them collinear, were added).
    ``weights`` (per row, rescaled to mean 1) weigh rows in the loss: augmented copies and weak
    labels count less than a hand-labelled clip.
    """
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    Y = np.eye(num_classes)[y]
    w = np.ones((n, 1)) if weights is None else (np.asarray(weights, np.float64) / np.mean(weights))[:, None]
    W = np.zeros((d + 1, num_classes))
    V = np.zeros_like(W)
    reg = np.full((d + 1, 1), l2)
    reg[-1] = 0.0  # the bias is not shrunk
    lr, mu = 1.0 / (0.5 * np.linalg.eigvalsh((Xb * w).T @ Xb / n).max() + l2), 0.9
    for _ in range(steps):
        look = W + mu * V
        grad = Xb.T @ ((_softmax(Xb @ look) - Y) * w) / n + reg * look
        V = mu * V - lr * grad
        W = W + V
    return W


def trees_from_sklearn(model) -> dict[str, np.ndarray]:
    """Export a fitted binary ``sklearn.ensemble.HistGradientBoostingClassifier`` as flat arrays.

    Returns ``feature``, ``threshold``, ``left``, ``right``, ``value``, ``missing_left`` (each
    ``(trees, nodes)``, leaves pointing at themselves) and ``baseline`` (shape ``(1,)``), scored by
    :func:`tree_logit` in numpy: the shipped model is arrays, never a pickle, and scoring needs no
    scikit-learn.
    """
    preds = [p[0].nodes for p in model._predictors]
    width = max(len(n) for n in preds)
    out = {
        "feature": np.zeros((len(preds), width), np.int64),
        "threshold": np.full((len(preds), width), np.inf),
        "left": np.zeros((len(preds), width), np.int64),
        "right": np.zeros((len(preds), width), np.int64),
        "value": np.zeros((len(preds), width)),
        "missing_left": np.zeros((len(preds), width), np.int64),
    }
    for t, nodes in enumerate(preds):
        k = np.arange(len(nodes))
        leaf = nodes["is_leaf"].astype(bool)
        out["feature"][t, k] = np.where(leaf, 0, nodes["feature_idx"])
        out["threshold"][t, k] = np.where(leaf, np.inf, nodes["num_threshold"])
        out["left"][t, k] = np.where(leaf, k, nodes["left"])
        out["right"][t, k] = np.where(leaf, k, nodes["right"])
        out["value"][t, k] = np.where(leaf, nodes["value"], 0.0)
        out["missing_left"][t, k] = nodes["missing_go_to_left"]
    out["baseline"] = np.asarray(model._baseline_prediction, np.float64).reshape(1)
    out["depth"] = np.array([max(int(n["depth"].max()) for n in preds)])
    return out


def tree_logit(trees: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Log-odds of a tree ensemble from :func:`trees_from_sklearn` for feature rows ``X`` (n, features):
    all trees walk one level per step (a leaf stays put), as scikit-learn's ``x <= threshold`` goes left."""
    X = np.atleast_2d(X)
    n, t = X.shape[0], trees["feature"].shape[0]
    rows, cols = np.arange(n)[:, None], np.arange(t)[None, :]
    node = np.zeros((n, t), np.int64)
    for _ in range(int(trees["depth"][0])):
        x = X[rows, trees["feature"][cols, node]]
        left = (x <= trees["threshold"][cols, node]) | (np.isnan(x) & (trees["missing_left"][cols, node] > 0))
        node = np.where(left, trees["left"][cols, node], trees["right"][cols, node])
    return trees["baseline"][0] + trees["value"][cols, node].sum(1)


def _boost(rows: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *, iterations: int = 200,
           learning_rate: float = 0.05, leaves: int = 15, seed: int = 0) -> dict[str, np.ndarray]:
    """Binary boosted trees (scikit-learn's histogram gradient boosting) as :func:`trees_from_sklearn` arrays."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    m = HistGradientBoostingClassifier(max_iter=iterations, learning_rate=learning_rate, max_leaf_nodes=leaves,
                                       l2_regularization=1.0, early_stopping=False, random_state=seed)
    return trees_from_sklearn(m.fit(rows, y, sample_weight=w))


class MusicEmotionEstimator:
    """Valence/arousal/quadrant of a piece from its notes (sklearn-like: fit / predict / score).

    Parameters
    ----------
    l2 : float
        L2 penalty of the logistic heads (on standardised features).

    sequence_weight : float
        Weight of the sequence model's probabilities in the blend (0..1), when it has one.
    tree_weight : float
        Share of the boosted trees (:meth:`fit_trees`) in the valence and arousal probabilities
        (0..1), when there are trees; the rest is the logistic heads'.
    quadrant_head : {"product", "softmax"}
        Where the feature model's quadrant probabilities come from: the product of the binary
        valence and arousal heads (``P(Q1) = p_v p_a``, ...; better by song-grouped CV on EMOPIA
        train, 0.734 vs 0.719), or the 4-way softmax head (models saved before this option).
    gate_l2 : float
        L2 penalty of the gate between the performance and score experts (:meth:`fit_score_expert`).

    Notes
    -----
    With a score expert (:meth:`fit_score_expert`), valence is a mixture of two experts: the heads above
    (and the CNN) for played performances like EMOPIA's clips, and a valence head for music that is
    notated, quantised or a lone melody, weighed by a gate ``g`` = P(the piece looks like a played
    performance): ``p_v = g p_perf + (1 - g) p_score``. In the shipped model g averages 0.97 on the
    EMOPIA valid clips, 0.04 on their score-like versions, 0.02 on Bach chorales and 0.01 on folk tunes
    (a gate L2 of 1.0 gave 0.88 / 0.15 / 0.11 / 0.06 and song-grouped CV 4Q 0.742 against 0.744).
    """

    def __init__(self, l2: float = 0.1, sequence_weight: float = 0.25, quadrant_head: str = "product",
                 tree_weight: float = 0.5, gate_l2: float = 0.1):
        if quadrant_head not in ("product", "softmax"):
            raise ValueError(f"quadrant_head must be 'product' or 'softmax', not {quadrant_head!r}")
        self.l2 = l2
        self.sequence_weight = sequence_weight
        self.quadrant_head = quadrant_head
        self.tree_weight = tree_weight
        self.gate_l2 = gate_l2
        self.w_gate_: np.ndarray | None = None  # performance (1) vs score-like (0), by fit_score_expert
        self.w_score_valence_: np.ndarray | None = None
        self.trees_: dict[str, dict[str, np.ndarray]] | None = None  # "valence"/"arousal" -> arrays, by fit_trees
        self.sequence_ = None  # a music_cnn.MusicCNNEnsemble, set by fit_sequence or load
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.w_quadrant_: np.ndarray | None = None
        self.w_valence_: np.ndarray | None = None
        self.w_arousal_: np.ndarray | None = None
        self.info_: dict = {}

    # -- training ---------------------------------------------------------
    def fit(self, X: np.ndarray, quadrants: Sequence[int], valence_X: np.ndarray | None = None,
            valence_labels: Sequence[bool] | None = None,
            valence_weights: Sequence[float] | None = None) -> MusicEmotionEstimator:
        """Fit on a feature matrix (rows from :func:`music_features`) and quadrant labels 1..4.

        ``valence_X`` / ``valence_labels`` (True = positive) are extra rows for the valence head
        alone, weighted by ``valence_weights`` (a clip of ``X`` weighs 1): score-like versions of the
        clips (:func:`random_plain_version`), weak labels. The standardisation comes from ``X``.
        """
        X = np.asarray(X, np.float64)
        q = np.asarray(quadrants, np.int64) - 1
        self.mean_ = X.mean(0)
        self.scale_ = X.std(0) + 1e-9
        Z = (X - self.mean_) / self.scale_
        v = np.isin(q, (0, 3)).astype(np.int64)
        self.w_quadrant_ = _fit_logistic(Z, q, 4, self.l2)
        if valence_X is None:
            self.w_valence_ = _fit_logistic(Z, v, 2, self.l2)
        else:
            extra = (np.asarray(valence_X, np.float64) - self.mean_) / self.scale_
            w = np.ones(len(extra)) if valence_weights is None else np.asarray(valence_weights, np.float64)
            # l2 penalises against the weighted mean loss over all rows, as for X alone.
            self.w_valence_ = _fit_logistic(
                np.vstack([Z, extra]), np.concatenate([v, np.asarray(valence_labels, np.int64)]), 2, self.l2,
                weights=np.concatenate([np.ones(len(Z)), w]))
        self.w_arousal_ = _fit_logistic(Z, np.isin(q, (0, 1)).astype(np.int64), 2, self.l2)
        return self

    def fit_trees(self, X: np.ndarray, quadrants: Sequence[int], valence_X: np.ndarray | None = None,
                  valence_labels: Sequence[bool] | None = None, valence_weights: Sequence[float] | None = None,
                  iterations: int = 200, learning_rate: float = 0.05, leaves: int = 15,
                  seed: int = 0) -> MusicEmotionEstimator:
        """Boosted trees (scikit-learn's histogram gradient boosting) for valence and arousal, on the same
        rows as :meth:`fit` (the extra valence rows go to the valence trees alone).

        The logistic heads are linear in the features; trees can use interactions and thresholds. Alone
        they are no better than the logistic heads; averaged with them (``tree_weight`` 0.5) they raised
        song-grouped CV 4Q on EMOPIA train from 0.725 to 0.744 (docs/emotion-music.md, "Issue 14").
        Stored as arrays (:func:`trees_from_sklearn`) and scored in numpy.
        """
        X = np.asarray(X, np.float64)
        q = np.asarray(quadrants, np.int64)

        def boost(rows, y, w=None):
            return _boost(rows, y, w, iterations=iterations, learning_rate=learning_rate, leaves=leaves, seed=seed)

        v = np.isin(q, (1, 4))
        if valence_X is None:
            trees_v = boost(X, v)
        else:
            w = np.ones(len(valence_X)) if valence_weights is None else np.asarray(valence_weights, np.float64)
            trees_v = boost(np.vstack([X, valence_X]), np.concatenate([v, np.asarray(valence_labels, bool)]),
                            np.concatenate([np.ones(len(X)), w]))
        self.trees_ = {"valence": trees_v, "arousal": boost(X, np.isin(q, (1, 2)))}
        return self

    def fit_score_expert(self, X: np.ndarray, quadrants: Sequence[int], versions: np.ndarray,
                         valence_X: np.ndarray, valence_labels: Sequence[bool],
                         valence_weights: Sequence[float] | None = None, seed: int = 0) -> MusicEmotionEstimator:
        """Fit the score expert and its gate (after :meth:`fit`, whose standardisation they share, and
        after :meth:`fit_trees`, which replaces every tree ensemble).

        EMOPIA's clips are played performances; a model of them reads a notated piece, a quantised MIDI
        file or a lone melody by cues it never saw in that form (one velocity, even rhythm, one voice),
        and its valence drifts: before this expert, 0.58 of 1,066 folk airs got the sign of their mode
        right, against 0.89 major. The expert is a logistic head averaged with boosted trees, fitted on
        the clips and ``valence_X`` (their score-like and melody versions, weak-labelled windows); the
        gate is a logistic regression that tells the clips ``X`` (1) from ``versions`` (0), feature rows
        of the clips' score-like and melody versions, each class weighing the same.

        Parameters
        ----------
        X : numpy.ndarray
            Feature rows of the labelled clips (the rows :meth:`fit` saw).
        quadrants : sequence of int
            Their quadrants 1..4.
        versions : numpy.ndarray
            Feature rows of the clips' versions, the gate's second class.
        valence_X, valence_labels, valence_weights
            The expert's extra rows, labels (True = positive) and weights (a clip weighs 1).
        """
        self._check()
        X = np.asarray(X, np.float64)
        v = np.isin(np.asarray(quadrants, np.int64), (1, 4))
        Zx = (X - self.mean_) / self.scale_
        Zv = (np.asarray(versions, np.float64) - self.mean_) / self.scale_
        gate_w = np.concatenate([np.full(len(Zx), len(Zv) / len(Zx)), np.ones(len(Zv))])
        self.w_gate_ = _fit_logistic(np.vstack([Zx, Zv]), np.r_[np.ones(len(Zx)), np.zeros(len(Zv))].astype(np.int64),
                                     2, self.gate_l2, weights=gate_w)
        rows = np.vstack([X, np.asarray(valence_X, np.float64)])
        labels = np.concatenate([v, np.asarray(valence_labels, bool)]).astype(np.int64)
        w = np.ones(len(valence_X)) if valence_weights is None else np.asarray(valence_weights, np.float64)
        weights = np.concatenate([np.ones(len(X)), w])
        self.w_score_valence_ = _fit_logistic((rows - self.mean_) / self.scale_, labels, 2, self.l2, weights=weights)
        self.trees_ = dict(self.trees_ or {}, score_valence=_boost(rows, labels, weights, seed=seed))
        return self

    def fit_sequence(self, pieces: Sequence[NoteArrays], quadrants: Sequence[int], config=None, seeds: int = 3,
                     progress: bool = False) -> MusicEmotionEstimator:
        """Train the temporal CNN (an ensemble of ``seeds`` members) on pieces' notes and labels 1..4."""
        from moodsong.emotion.music_cnn import MusicCNNConfig, MusicCNNEnsemble, fit_music_cnn

        config = config or MusicCNNConfig()
        arrays = [(n.onset, n.duration, n.pitch, n.velocity) for n in pieces]
        nets = [fit_music_cnn(arrays, quadrants, config, seed=s, progress=progress) for s in range(seeds)]
        self.sequence_ = MusicCNNEnsemble(nets, config)
        return self

    def _check(self) -> None:
        if self.w_quadrant_ is None:
            raise RuntimeError("the estimator is not fitted")

    # -- inference --------------------------------------------------------
    def _parts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """The feature model's pieces: performance valence ``pv`` and arousal ``pa`` probabilities, and,
        with a score expert, the gate ``g`` and the expert's valence probability ``ps``."""
        self._check()
        X = np.atleast_2d(np.asarray(X, np.float64))
        Z = np.hstack([(X - self.mean_) / self.scale_, np.ones((X.shape[0], 1))])
        pv = _softmax(Z @ self.w_valence_)[:, 1]
        pa = _softmax(Z @ self.w_arousal_)[:, 1]
        if self.trees_ is not None and self.tree_weight > 0:
            t = self.tree_weight
            pv = (1 - t) * pv + t * _sigmoid(tree_logit(self.trees_["valence"], X))
            pa = (1 - t) * pa + t * _sigmoid(tree_logit(self.trees_["arousal"], X))
        out = {"pv": pv, "pa": pa, "Z": Z}
        if self.w_gate_ is not None:
            out["g"] = _softmax(Z @ self.w_gate_)[:, 1]
            out["ps"] = 0.5 * _softmax(Z @ self.w_score_valence_)[:, 1] + 0.5 * _sigmoid(
                tree_logit(self.trees_["score_valence"], X))
        return out

    @staticmethod
    def _product(pv: np.ndarray, pa: np.ndarray) -> np.ndarray:
        """Quadrant probabilities of independent valence and arousal (Q1 = V+A+, Q2 = V-A+, Q3 = V-A-, Q4 = V+A-)."""
        return np.stack([pv * pa, (1 - pv) * pa, (1 - pv) * (1 - pa), pv * (1 - pa)], axis=-1)

    def predict_features(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays ``valence``, ``arousal`` (in [-1, 1]), ``quadrant`` (1..4), ``probabilities`` (n, 4),
        and ``performance`` (the gate, in [0, 1]; 1 without a score expert)."""
        return self._mix(self._parts(X))

    def _mix(self, parts: dict[str, np.ndarray], pc: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The prediction from :meth:`_parts`, with the CNN's quadrant probabilities ``pc`` (n, 4) if given."""
        pv, pa = parts["pv"], parts["pa"]
        probs = self._product(pv, pa) if self.quadrant_head == "product" else _softmax(parts["Z"] @ self.w_quadrant_)
        if pc is not None:
            w = self.sequence_weight
            probs = (1 - w) * probs + w * pc
            # Valence/arousal: the binary feature heads blended with the CNN's marginals (Q1+Q4, Q1+Q2).
            pv = (1 - w) * pv + w * (pc[:, 0] + pc[:, 3])
            pa = (1 - w) * pa + w * (pc[:, 0] + pc[:, 1])
        g = parts.get("g", np.ones_like(pv))
        if "g" in parts:
            # The score expert's valence joins after the CNN, which learnt performances only and so speaks
            # inside the performance expert alone.
            probs = g[:, None] * probs + (1 - g[:, None]) * self._product(parts["ps"], pa)
            pv = g * pv + (1 - g) * parts["ps"]
        return {"valence": 2 * pv - 1, "arousal": 2 * pa - 1, "quadrant": probs.argmax(1) + 1,
                "probabilities": probs, "performance": g}

    def _blend(self, notes: NoteArrays, f: np.ndarray) -> dict[str, np.ndarray]:
        if self.sequence_ is None or self.sequence_weight <= 0:
            return self.predict_features(f[None])
        pc = self.sequence_.predict_proba(notes.onset, notes.duration, notes.pitch, notes.velocity)
        return self._mix(self._parts(f[None]), np.asarray(pc)[None])

    def predict_pieces(self, pieces: Sequence[NoteArrays]) -> dict[str, np.ndarray]:
        """Like :meth:`predict_features`, for pieces' notes (uses the sequence model when there is one)."""
        outs = [self._blend(n, music_features(n)) for n in pieces]
        keys = ("valence", "arousal", "quadrant", "probabilities", "performance")
        return {k: np.concatenate([o[k] for o in outs]) for k in keys}

    def score_pieces(self, pieces: Sequence[NoteArrays], quadrants: Sequence[int]) -> dict[str, float]:
        """Like :meth:`score`, for pieces' notes (uses the sequence model when there is one)."""
        return self._accuracies(self.predict_pieces(pieces), quadrants)

    def predict_notes(self, notes: NoteArrays) -> MusicEmotion:
        """Estimate the emotion of one piece given as :class:`NoteArrays`."""
        f = music_features(notes)
        out = self._blend(notes, f)
        return MusicEmotion(
            valence=float(out["valence"][0]),
            arousal=float(out["arousal"][0]),
            quadrant=int(out["quadrant"][0]),
            probabilities=[float(x) for x in out["probabilities"][0]],
            features=dict(zip(FEATURE_NAMES, f.tolist())),
            performance=float(out["performance"][0]),
        )

    def predict_score(self, score: symusic.Score) -> MusicEmotion:
        """Estimate the emotion of a symusic score."""
        return self.predict_notes(score_notes(score))

    def predict_file(self, path: str | os.PathLike) -> MusicEmotion:
        """Estimate the emotion of a MIDI file (raises :class:`~moodsong.errors.BadMidiError` if unreadable)."""
        return self.predict_score(read_score(path))

    def score(self, X: np.ndarray, quadrants: Sequence[int]) -> dict[str, float]:
        """Accuracies on labelled data: ``quadrant`` (4-way), ``valence`` and ``arousal`` (binary)."""
        return self._accuracies(self.predict_features(X), quadrants)

    @staticmethod
    def _accuracies(out: dict, quadrants: Sequence[int]) -> dict[str, float]:
        q = np.asarray(quadrants, np.int64)
        v_true = np.isin(q, (1, 4))
        a_true = np.isin(q, (1, 2))
        return {
            "quadrant": float(np.mean(out["quadrant"] == q)),
            "valence": float(np.mean((out["valence"] >= 0) == v_true)),
            "arousal": float(np.mean((out["arousal"] >= 0) == a_true)),
            "n": int(q.size),
        }

    # -- persistence ------------------------------------------------------
    def to_dict(self, sequence_file: str | None = None, tree_file: str | None = None) -> dict:
        self._check()
        return {
            "model_type": "music_emotion_logistic",
            "features": list(FEATURE_NAMES),
            "l2": self.l2,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "w_quadrant": self.w_quadrant_.tolist(),
            "w_valence": self.w_valence_.tolist(),
            "w_arousal": self.w_arousal_.tolist(),
            "sequence_model": sequence_file,
            "sequence_weight": self.sequence_weight,
            "tree_model": tree_file,
            "tree_weight": self.tree_weight,
            "quadrant_head": self.quadrant_head,
            "gate_l2": self.gate_l2,
            "w_gate": None if self.w_gate_ is None else self.w_gate_.tolist(),
            "w_score_valence": None if self.w_score_valence_ is None else self.w_score_valence_.tolist(),
            "info": self.info_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MusicEmotionEstimator:
        if d.get("model_type") != "music_emotion_logistic" or list(d.get("features", [])) != list(FEATURE_NAMES):
            raise MoodsongError("not a music-emotion model of this moodsong version (feature list differs)")
        est = cls(l2=float(d["l2"]), sequence_weight=float(d.get("sequence_weight", 0.5)),
                  quadrant_head=d.get("quadrant_head", "softmax"), tree_weight=float(d.get("tree_weight", 0.0)))
        est.mean_ = np.asarray(d["mean"])
        est.scale_ = np.asarray(d["scale"])
        est.w_quadrant_ = np.asarray(d["w_quadrant"])
        est.w_valence_ = np.asarray(d["w_valence"])
        est.w_arousal_ = np.asarray(d["w_arousal"])
        est.gate_l2 = float(d.get("gate_l2", est.gate_l2))
        if d.get("w_gate") is not None:  # models saved before the score expert have neither
            est.w_gate_ = np.asarray(d["w_gate"])
            est.w_score_valence_ = np.asarray(d["w_score_valence"])
        est.info_ = dict(d.get("info", {}))
        return est

    def save(self, path: str | os.PathLike) -> Path:
        """JSON at ``path``; a sequence model goes next to it as ``<stem>_cnn.safetensors``, boosted trees
        as ``<stem>_trees.safetensors``."""
        from safetensors.numpy import save_file

        from moodsong.fileio import atomic_path

        path = Path(path)
        seq = trees = None
        if self.sequence_ is not None:
            seq = path.stem + "_cnn.safetensors"
            self.sequence_.save(path.with_name(seq))
        if self.trees_ is not None:
            trees = path.stem + "_trees.safetensors"
            # Node indices and feature numbers fit in int16 (a tree has at most a few hundred nodes); thresholds
            # and leaf values stay float64, so scoring is exactly scikit-learn's.
            flat = {f"{head}.{k}": np.ascontiguousarray(a.astype(np.int16) if a.dtype.kind in "iu" else a)
                    for head, arrays in self.trees_.items() for k, a in arrays.items()}
            with atomic_path(path.with_name(trees)) as tmp:
                save_file(flat, str(tmp))
        write_text_atomic(path, json.dumps(self.to_dict(seq, trees), indent=1))
        return path

    def _load_sequence(self, d: dict, folder) -> MusicEmotionEstimator:
        """The sequence model and the trees saved next to the JSON, if it names them."""
        if d.get("tree_model"):
            from safetensors.numpy import load_file

            try:
                flat = load_file(str(folder / d["tree_model"]))
            except Exception as exc:  # missing or corrupt weights file: a user-facing error
                raise MoodsongError(f"cannot read the music-emotion trees {d['tree_model']} ({exc})") from None
            self.trees_ = {}
            for key, a in flat.items():
                head, name = key.split(".", 1)
                self.trees_.setdefault(head, {})[name] = a.astype(np.int64) if a.dtype.kind in "iu" else a
        if d.get("sequence_model"):
            from moodsong.emotion.music_cnn import MusicCNNEnsemble

            try:
                self.sequence_ = MusicCNNEnsemble.load(folder / d["sequence_model"])
            except Exception as exc:  # missing or corrupt weights file: a user-facing error
                raise MoodsongError(f"cannot read the music-emotion sequence model {d['sequence_model']} "
                                    f"({exc})") from None
        return self

    @classmethod
    def load(cls, path: str | os.PathLike) -> MusicEmotionEstimator:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MoodsongError(f"{path}: cannot read music-emotion model ({exc})") from None
        return cls.from_dict(d)._load_sequence(d, Path(path).parent)

    @classmethod
    def load_default(cls) -> MusicEmotionEstimator:
        """The estimator shipped with moodsong (trained on EMOPIA's train split)."""
        folder = resources.files("moodsong") / "data"
        d = json.loads((folder / DEFAULT_MODEL).read_text(encoding="utf-8"))
        with resources.as_file(folder) as path:
            return cls.from_dict(d)._load_sequence(d, Path(path))


# -- EMOPIA ------------------------------------------------------------------


def emopia_index(root: str | os.PathLike, only: str | None = None) -> list[tuple[str, Path, int, str]]:
    """EMOPIA's labelled clips present on disk: ``(name, MIDI path, quadrant 1..4, split)``, sorted by name.

    ``root`` holds ``midis/``, ``label.csv`` and ``split.csv``; ``only="valid"``
    (or ``"train"``) keeps that split alone.
    """
    import csv

    root = Path(root)
    if not (root / "label.csv").is_file():
        raise MoodsongError(f"{root}: not an EMOPIA folder (no label.csv)")
    with open(root / "label.csv", newline="") as f:
        labels = {r["ID"]: int(r["4Q"]) for r in csv.DictReader(f)}
    with open(root / "split.csv", newline="") as f:
        splits = {Path(r["clip"]).stem: r["split"] for r in csv.DictReader(f)}
    out = []
    for name in sorted(splits):
        path = root / "midis" / f"{name}.mid"
        if name in labels and path.is_file() and (only is None or splits[name] == only):
            out.append((name, path, labels[name], splits[name]))
    return out


def emopia_song(clip: str) -> str:
    """The song a clip comes from: ``"Q1_0vLPYiPN7qY_2"`` -> ``"0vLPYiPN7qY"`` (the YouTube id its clips share)."""
    return clip.split("_", 1)[1].rsplit("_", 1)[0]


def song_folds(songs: Sequence[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-validation fold (0 .. folds-1) of each clip, whole songs to a fold.

    Clips of one song share melody and harmony, so a song split across folds would leak.
    """
    rng = np.random.default_rng(seed)
    uniq = np.array(sorted(set(songs)))
    fold_of = dict(zip(uniq, rng.permutation(len(uniq)) % folds))
    return np.array([fold_of[s] for s in songs])


def emopia_clips(root: str | os.PathLike,
                 only: str | None = None) -> tuple[list[str], list[NoteArrays], np.ndarray, list[str]]:
    """Read EMOPIA's notes: ``(clip names, notes per clip, quadrant labels, split per clip)``.

    ``root`` holds ``midis/``, ``label.csv`` and ``split.csv``. Clips that cannot
    be read or have fewer than 4 notes are skipped; ``only="valid"`` (or
    ``"train"``) reads that split alone.
    """
    from tqdm.auto import tqdm

    names, notes, quads, sp = [], [], [], []
    for name, path, quad, split in tqdm(emopia_index(root, only), desc="EMOPIA clips", unit="clip"):
        try:
            n = score_notes(read_score(path))
        except MoodsongError:
            continue
        if len(n) < 4:
            continue
        names.append(name)
        notes.append(n)
        quads.append(quad)
        sp.append(split)
    return names, notes, np.array(quads), sp


def pop909_songs(root: str | os.PathLike, split: str) -> tuple[list[str], list[NoteArrays], np.ndarray]:
    """POP909 songs of one split (``"train"`` or ``"valid"``; see :func:`moodsong.corpora.pop909.split_of`):
    ``(song ids, all notes of each song, True where the annotated main key is major)``.

    The key annotation is a weak valence label (a minor-key pop song is more often sad than a major one),
    used as extra valence training rows and as a cross-domain check. Songs that
    :func:`moodsong.corpora.pop909.load_song` refuses (not in 4/4) are skipped.
    """
    from moodsong.corpora.pop909 import load_song, song_folders

    if split == "test":
        raise MoodsongError("POP909's test songs are held out; read 'train' or 'valid'")
    ids, notes, major = [], [], []
    for folder in song_folders(root, split):
        try:
            song = load_song(folder)
            n = score_notes(read_score(folder / f"{folder.name}.mid"))
        except MoodsongError:
            continue
        ids.append(folder.name)
        notes.append(n)
        major.append(song.mode == "major")
    return ids, notes, np.array(major, bool)


def load_emopia(root: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Read EMOPIA: ``(clip names, feature matrix, quadrant labels, split per clip)``.

    ``root`` holds ``midis/``, ``label.csv`` and ``split.csv``. Clips that cannot
    be read are skipped.
    """
    names, notes, quads, sp = emopia_clips(root)
    return names, np.array([music_features(n) for n in notes]), quads, sp
