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
- **texture**: mean polyphony, pitch-class entropy.

All times are in seconds (taken through the score's tempo map), so a piece
written at 70 qpm and one at 140 qpm with the same notes differ in density,
as a listener hears them.

Three heads are fitted on standardised features: a 4-way quadrant softmax, and
binary valence (Q1, Q4 vs Q2, Q3) and arousal (Q1, Q2 vs Q3, Q4) logistic
models. Continuous valence/arousal in [-1, 1] are ``2 p - 1`` of the binary
heads. The fitted model is a few kB of JSON shipped in ``moodsong/data``.

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
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import symusic

from ..errors import MoodsongError
from ..fileio import write_text_atomic
from ..pianoroll import read_score

__all__ = [
    "FEATURE_NAMES",
    "MusicEmotion",
    "MusicEmotionEstimator",
    "NoteArrays",
    "score_notes",
    "music_features",
    "emopia_clips",
    "key_estimate",
    "DEFAULT_MODEL",
]

#: File name of the shipped estimator inside ``moodsong/data``.
DEFAULT_MODEL = "music_emotion.json"

# Krumhansl-Kessler probe-tone profiles (C major / C minor), the standard key-finding weights.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

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
    cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
    order = np.argsort(cat("time"), kind="stable")
    return NoteArrays(
        cat("time").astype(np.float64)[order],
        np.maximum(cat("duration").astype(np.float64)[order], 1e-3),
        cat("pitch").astype(np.int64)[order],
        cat("velocity").astype(np.int64)[order],
    )


def _pc_histogram(notes: NoteArrays) -> np.ndarray:
    h = np.bincount(notes.pitch % 12, weights=notes.duration, minlength=12)
    return h / h.sum() if h.sum() > 0 else h


def _key_correlations(hist: np.ndarray) -> np.ndarray:
    """Pearson r of a pitch-class histogram with the 24 keys: rows 0..11 major, 12..23 minor (by tonic)."""
    profiles = np.stack([np.roll(_KK_MAJOR, k) for k in range(12)] + [np.roll(_KK_MINOR, k) for k in range(12)])
    p = profiles - profiles.mean(1, keepdims=True)
    h = hist - hist.mean()
    denom = np.linalg.norm(p, axis=1) * (np.linalg.norm(h) + 1e-12)
    return p @ h / denom


def key_estimate(notes: NoteArrays) -> tuple[int, str, float]:
    """Most likely key: ``(tonic pitch class, "major"|"minor", correlation)``."""
    r = _key_correlations(_pc_histogram(notes))
    k = int(np.argmax(r))
    return k % 12, ("major" if k < 12 else "minor"), float(r[k])


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


def music_features(notes: NoteArrays) -> np.ndarray:
    """The feature vector (order of :data:`FEATURE_NAMES`) of a piece's notes.

    Raises
    ------
    MoodsongError
        If the piece has fewer than 4 notes (nothing to judge).
    """
    if len(notes) < 4:
        raise MoodsongError("the piece has too few notes to estimate its emotion")
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
    return np.array(
        [
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
        ]
    )


@dataclass
class MusicEmotion:
    """What the estimator hears in a piece.

    Attributes
    ----------
    valence, arousal : float
        In [-1, 1] (``2 p - 1`` of the binary heads).
    quadrant : int
        1..4, from the 4-way head.
    probabilities : list of float
        Quadrant probabilities Q1..Q4.
    features : dict
        The named feature values, for explanation.
    """

    valence: float
    arousal: float
    quadrant: int
    probabilities: list[float]
    features: dict = field(default_factory=dict)

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


def _fit_logistic(X: np.ndarray, y: np.ndarray, num_classes: int, l2: float, steps: int = 3000) -> np.ndarray:
    """Multinomial logistic regression by full-batch gradient descent with Nesterov momentum.

    Returns weights of shape ``(features + 1, num_classes)`` (last row: bias).
    Plain numpy: the problem is tiny (hundreds of rows, ~20 features) and convex.
    """
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    Y = np.eye(num_classes)[y]
    W = np.zeros((d + 1, num_classes))
    V = np.zeros_like(W)
    reg = np.full((d + 1, 1), l2)
    reg[-1] = 0.0  # the bias is not shrunk
    lr, mu = 0.5, 0.9
    for _ in range(steps):
        look = W + mu * V
        grad = Xb.T @ (_softmax(Xb @ look) - Y) / n + reg * look
        V = mu * V - lr * grad
        W = W + V
    return W


class MusicEmotionEstimator:
    """Valence/arousal/quadrant of a piece from its notes (sklearn-like: fit / predict / score).

    Parameters
    ----------
    l2 : float
        L2 penalty of the logistic heads (on standardised features).

    sequence_weight : float
        Weight of the sequence model's probabilities in the blend (0..1), when it has one.
    """

    def __init__(self, l2: float = 0.02, sequence_weight: float = 0.5):
        self.l2 = l2
        self.sequence_weight = sequence_weight
        self.sequence_ = None  # a music_cnn.MusicCNNEnsemble, set by fit_sequence or load
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.w_quadrant_: np.ndarray | None = None
        self.w_valence_: np.ndarray | None = None
        self.w_arousal_: np.ndarray | None = None
        self.info_: dict = {}

    # -- training ---------------------------------------------------------
    def fit(self, X: np.ndarray, quadrants: Sequence[int]) -> "MusicEmotionEstimator":
        """Fit on a feature matrix (rows from :func:`music_features`) and quadrant labels 1..4."""
        X = np.asarray(X, np.float64)
        q = np.asarray(quadrants, np.int64) - 1
        self.mean_ = X.mean(0)
        self.scale_ = X.std(0) + 1e-9
        Z = (X - self.mean_) / self.scale_
        self.w_quadrant_ = _fit_logistic(Z, q, 4, self.l2)
        self.w_valence_ = _fit_logistic(Z, np.isin(q, (0, 3)).astype(np.int64), 2, self.l2)
        self.w_arousal_ = _fit_logistic(Z, np.isin(q, (0, 1)).astype(np.int64), 2, self.l2)
        return self

    def fit_sequence(self, pieces: Sequence[NoteArrays], quadrants: Sequence[int], config=None, seeds: int = 3,
                     progress: bool = False) -> "MusicEmotionEstimator":
        """Train the temporal CNN (an ensemble of ``seeds`` members) on pieces' notes and labels 1..4."""
        from .music_cnn import MusicCNNConfig, MusicCNNEnsemble, fit_music_cnn

        config = config or MusicCNNConfig()
        arrays = [(n.onset, n.duration, n.pitch, n.velocity) for n in pieces]
        nets = [fit_music_cnn(arrays, quadrants, config, seed=s, progress=progress) for s in range(seeds)]
        self.sequence_ = MusicCNNEnsemble(nets, config)
        return self

    def _check(self) -> None:
        if self.w_quadrant_ is None:
            raise RuntimeError("the estimator is not fitted")

    # -- inference --------------------------------------------------------
    def predict_features(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays ``valence``, ``arousal`` (in [-1, 1]), ``quadrant`` (1..4), ``probabilities`` (n, 4)."""
        self._check()
        X = np.atleast_2d(np.asarray(X, np.float64))
        Z = np.hstack([(X - self.mean_) / self.scale_, np.ones((X.shape[0], 1))])
        probs = _softmax(Z @ self.w_quadrant_)
        pv = _softmax(Z @ self.w_valence_)[:, 1]
        pa = _softmax(Z @ self.w_arousal_)[:, 1]
        return {
            "valence": 2 * pv - 1,
            "arousal": 2 * pa - 1,
            "quadrant": probs.argmax(1) + 1,
            "probabilities": probs,
        }

    def _blend(self, notes: NoteArrays, f: np.ndarray) -> dict[str, np.ndarray]:
        out = self.predict_features(f[None])
        if self.sequence_ is None or self.sequence_weight <= 0:
            return out
        w = self.sequence_weight
        pc = self.sequence_.predict_proba(notes.onset, notes.duration, notes.pitch, notes.velocity)
        probs = (1 - w) * out["probabilities"][0] + w * pc
        # Valence/arousal: the binary feature heads blended with the CNN's marginals (Q1+Q4, Q1+Q2).
        pv = (1 - w) * (out["valence"][0] + 1) / 2 + w * (pc[0] + pc[3])
        pa = (1 - w) * (out["arousal"][0] + 1) / 2 + w * (pc[0] + pc[1])
        return {
            "valence": np.array([2 * pv - 1]),
            "arousal": np.array([2 * pa - 1]),
            "quadrant": np.array([int(probs.argmax()) + 1]),
            "probabilities": probs[None],
        }

    def predict_pieces(self, pieces: Sequence[NoteArrays]) -> dict[str, np.ndarray]:
        """Like :meth:`predict_features`, for pieces' notes (uses the sequence model when there is one)."""
        outs = [self._blend(n, music_features(n)) for n in pieces]
        return {k: np.concatenate([o[k] for o in outs]) for k in ("valence", "arousal", "quadrant", "probabilities")}

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
    def to_dict(self, sequence_file: str | None = None) -> dict:
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
            "info": self.info_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "MusicEmotionEstimator":
        if d.get("model_type") != "music_emotion_logistic" or list(d.get("features", [])) != list(FEATURE_NAMES):
            raise MoodsongError("not a music-emotion model of this moodsong version (feature list differs)")
        est = cls(l2=float(d["l2"]), sequence_weight=float(d.get("sequence_weight", 0.5)))
        est.mean_ = np.asarray(d["mean"])
        est.scale_ = np.asarray(d["scale"])
        est.w_quadrant_ = np.asarray(d["w_quadrant"])
        est.w_valence_ = np.asarray(d["w_valence"])
        est.w_arousal_ = np.asarray(d["w_arousal"])
        est.info_ = dict(d.get("info", {}))
        return est

    def save(self, path: str | os.PathLike) -> Path:
        """JSON at ``path``; a sequence model goes next to it as ``<stem>_cnn.safetensors``."""
        path = Path(path)
        seq = None
        if self.sequence_ is not None:
            seq = path.stem + "_cnn.safetensors"
            self.sequence_.save(path.with_name(seq))
        write_text_atomic(path, json.dumps(self.to_dict(seq), indent=1))
        return path

    def _load_sequence(self, d: dict, folder) -> "MusicEmotionEstimator":
        if d.get("sequence_model"):
            from .music_cnn import MusicCNNEnsemble

            try:
                self.sequence_ = MusicCNNEnsemble.load(folder / d["sequence_model"])
            except Exception as exc:  # missing or corrupt weights file: a user-facing error
                raise MoodsongError(f"cannot read the music-emotion sequence model {d['sequence_model']} ({exc})") from None
        return self

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MusicEmotionEstimator":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MoodsongError(f"{path}: cannot read music-emotion model ({exc})") from None
        return cls.from_dict(d)._load_sequence(d, Path(path).parent)

    @classmethod
    def load_default(cls) -> "MusicEmotionEstimator":
        """The estimator shipped with moodsong (trained on EMOPIA's train split)."""
        folder = resources.files("moodsong") / "data"
        d = json.loads((folder / DEFAULT_MODEL).read_text(encoding="utf-8"))
        with resources.as_file(folder) as path:
            return cls.from_dict(d)._load_sequence(d, Path(path))


# -- EMOPIA ------------------------------------------------------------------


def emopia_clips(root: str | os.PathLike, only: str | None = None) -> tuple[list[str], list[NoteArrays], np.ndarray, list[str]]:
    """Read EMOPIA's notes: ``(clip names, notes per clip, quadrant labels, split per clip)``.

    ``root`` holds ``midis/``, ``label.csv`` and ``split.csv``. Clips that cannot
    be read or have fewer than 4 notes are skipped; ``only="valid"`` (or
    ``"train"``) reads that split alone.
    """
    import csv

    from tqdm.auto import tqdm

    root = Path(root)
    if not (root / "label.csv").is_file():
        raise MoodsongError(f"{root}: not an EMOPIA folder (no label.csv)")
    with open(root / "label.csv", newline="") as f:
        labels = {r["ID"]: int(r["4Q"]) for r in csv.DictReader(f)}
    with open(root / "split.csv", newline="") as f:
        splits = {Path(r["clip"]).stem: r["split"] for r in csv.DictReader(f)}
    names, notes, quads, sp = [], [], [], []
    for name in tqdm(sorted(splits), desc="EMOPIA clips", unit="clip"):
        path = root / "midis" / f"{name}.mid"
        if name not in labels or not path.is_file() or (only is not None and splits[name] != only):
            continue
        try:
            n = score_notes(read_score(path))
        except MoodsongError:
            continue
        if len(n) < 4:
            continue
        names.append(name)
        notes.append(n)
        quads.append(labels[name])
        sp.append(splits[name])
    return names, notes, np.array(quads), sp


def load_emopia(root: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Read EMOPIA: ``(clip names, feature matrix, quadrant labels, split per clip)``.

    ``root`` holds ``midis/``, ``label.csv`` and ``split.csv``. Clips that cannot
    be read are skipped.
    """
    names, notes, quads, sp = emopia_clips(root)
    return names, np.array([music_features(n) for n in notes]), quads, sp
