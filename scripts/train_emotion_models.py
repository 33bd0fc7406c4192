"""Train the shipped emotion models from ../shared/data (run once; results go to src/moodsong/data/).

1. The music-emotion estimator (moodsong.emotion.music) on EMOPIA's train split:
   the logistic feature heads (L2 penalty chosen by song-grouped 5-fold
   cross-validation on the train split only) and the temporal CNN ensemble
   (moodsong.emotion.music_cnn; transposition + random-crop augmentation).
   With --select-weight the CNN/feature blend weight is chosen by the same
   song-grouped CV (one CNN per fold). The valid split is scored once, at the end,
   and never used for any choice.
2. The emotion-conditional RBM (moodsong.models.conditional_rbm) on windows of
   all EMOPIA clips (hand labels, one-hot) plus the pop_music_midi corpus with
   weak labels (the estimator's quadrant probabilities for each file).

Usage:
    nice -n 10 python scripts/train_emotion_models.py [--shared ../shared/data] [--epochs 6]
    nice -n 10 python scripts/train_emotion_models.py --skip-crbm --select-weight   # estimator only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from moodsong.emotion.music import (
    DEFAULT_MODEL,
    MusicEmotionEstimator,
    emopia_clips,
    emopia_index,
    music_features,
    song_folds,
)
from moodsong.emotion.music import emopia_song as song_of
from moodsong.emotion.music_cnn import MusicCNNConfig, MusicCNNEnsemble, fit_music_cnn
from moodsong.errors import MoodsongError
from moodsong.models.checkpoint import save_checkpoint
from moodsong.models.conditional_rbm import ConditionalRBMConfig, fit_conditional_rbm
from moodsong.representation.pianoroll import PianoRollConfig, midi_to_roll, read_score

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "moodsong" / "data"
CRBM_STEM = "emotion_crbm"


def choose_weight(notes, X, q, songs, l2, config, grid=(0.0, 0.25, 0.5, 0.75, 1.0), folds=5):
    """Song-grouped CV of the CNN/feature blend weight (one CNN per fold, seed 0)."""
    f = song_folds(songs, folds)
    accs = {w: [] for w in grid}
    for k in range(folds):
        tr, te = np.flatnonzero(f != k), np.flatnonzero(f == k)
        est = MusicEmotionEstimator(l2=l2).fit(X[tr], q[tr])
        net = fit_music_cnn([(n.onset, n.duration, n.pitch, n.velocity) for n in (notes[i] for i in tr)], q[tr], config)
        est.sequence_ = MusicCNNEnsemble([net], config)
        for w in grid:
            est.sequence_weight = w
            accs[w].append(est.score_pieces([notes[i] for i in te], q[te])["quadrant"] * te.size)
        print(f"  fold {k}: " + "  ".join(f"w={w}: {accs[w][-1] / te.size:.3f}" for w in grid), flush=True)
    cv = {w: float(np.sum(a) / len(q)) for w, a in accs.items()}
    print("  CV 4Q accuracy by blend weight: " + "  ".join(f"w={w}: {a:.3f}" for w, a in cv.items()))
    best = max(grid, key=lambda w: (cv[w], -abs(w - 0.5)))
    return best, cv


def choose_l2(X, q, songs, grid=(0.01, 0.03, 0.1, 0.3, 1.0), folds=5, seed=0):
    f = song_folds(songs, folds, seed)
    best = None
    for l2 in grid:
        accs = []
        for k in range(folds):
            est = MusicEmotionEstimator(l2=l2).fit(X[f != k], q[f != k])
            accs.append(est.score(X[f == k], q[f == k])["quadrant"])
        m = float(np.mean(accs))
        print(f"  l2={l2:<5} cv 4Q accuracy {m:.3f}")
        if best is None or m > best[1]:
            best = (l2, m)
    return best


def windows_of(roll: np.ndarray, T: int, stride: int, shifts=(0,)) -> list[np.ndarray]:
    P = roll.shape[1] // 2
    out = []
    for s in shifts:
        r = np.zeros_like(roll)
        if s >= 0:
            r[:, s:P] = roll[:, : P - s]
            r[:, P + s :] = roll[:, P : 2 * P - s]
        else:
            r[:, : P + s] = roll[:, -s:P]
            r[:, P : 2 * P + s] = roll[:, P - s :]
        for t in range(0, r.shape[0] - T + 1, stride):
            w = r[t : t + T]
            if w[:, P:].sum() >= 3:  # skip near-silent windows
                out.append(w.reshape(-1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stride", type=int, default=16, help="steps between training windows")
    ap.add_argument("--shifts", type=int, default=1, help="transpose by -N..N semitones (augmentation)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--skip-estimator", action="store_true")
    ap.add_argument("--skip-crbm", action="store_true", help="train only the music-emotion estimator")
    ap.add_argument("--cnn-seeds", type=int, default=3, help="members of the shipped CNN ensemble")
    ap.add_argument("--cnn-epochs", type=int, default=MusicCNNConfig.epochs)
    ap.add_argument("--sequence-weight", type=float, default=0.25, help="CNN share of the blend (unless --select-weight)")
    ap.add_argument("--select-weight", action="store_true", help="choose the blend weight by song-grouped CV on train")
    args = ap.parse_args()
    shared = Path(args.shared)
    emopia = shared / "emopia"

    # -- 1. estimator ---------------------------------------------------------
    if args.skip_estimator:
        est = MusicEmotionEstimator.load(DATA / DEFAULT_MODEL)
    else:
        names, notes, q, split = emopia_clips(emopia)
        X = np.array([music_features(n) for n in notes])
        split = np.array(split)
        tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "valid")
        songs = [song_of(names[i]) for i in tr]
        print("choosing L2 by song-grouped 5-fold CV on the train split:")
        l2, cv = choose_l2(X[tr], q[tr], songs)
        config = MusicCNNConfig(epochs=args.cnn_epochs)
        weight, wcv = args.sequence_weight, None
        if args.select_weight:
            print("choosing the CNN blend weight by song-grouped 5-fold CV on the train split:")
            weight, wcv = choose_weight([notes[i] for i in tr], X[tr], q[tr], songs, l2, config)
        est = MusicEmotionEstimator(l2=l2, sequence_weight=weight).fit(X[tr], q[tr])
        feat_valid = est.score(X[va], q[va])
        print(f"EMOPIA valid, feature model only: 4Q {feat_valid['quadrant']:.3f}  valence {feat_valid['valence']:.3f}  arousal {feat_valid['arousal']:.3f}")
        est.fit_sequence([notes[i] for i in tr], q[tr], config, seeds=args.cnn_seeds, progress=True)
        valid = est.score_pieces([notes[i] for i in va], q[va])
        print(f"EMOPIA valid (blend w={weight}): 4Q {valid['quadrant']:.3f}  valence {valid['valence']:.3f}  arousal {valid['arousal']:.3f} (n={valid['n']})")
        rnd = lambda d: {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
        est.info_ = {
            "trained_on": "EMOPIA 1.0 train split (876 clips), CC BY 4.0",
            "features": len(X[0]),
            "quadrant_head": est.quadrant_head,
            "l2_cv_accuracy": round(cv, 4),
            "sequence_weight_cv_accuracy": None if wcv is None else {str(w): round(a, 4) for w, a in wcv.items()},
            "cnn": {"seeds": args.cnn_seeds, **{k: v for k, v in vars(config).items()}},
            "valid": rnd(valid),
            "valid_feature_model_only": rnd(feat_valid),
        }
        est.save(DATA / DEFAULT_MODEL)
        if args.skip_crbm:
            return 0

    # -- 2. conditional RBM ------------------------------------------------------
    cfg = ConditionalRBMConfig(num_timesteps=16, num_hidden=args.hidden, num_conditions=4, pianoroll=PianoRollConfig())
    wins, conds = [], []
    shifts = tuple(range(-args.shifts, args.shifts + 1))  # small transpositions keep mode and register roughly intact
    for _, path, quad, _ in emopia_index(emopia):
        w = windows_of(midi_to_roll(path, cfg.pianoroll), cfg.num_timesteps, args.stride, shifts)
        wins += w
        conds += [np.eye(4)[quad - 1]] * len(w)
    n_emopia = len(wins)
    weak = 0
    pop = shared / "pop_music_midi"
    for path in sorted(pop.glob("*.mid*")):
        try:
            score = read_score(path)
            probs = np.array(est.predict_score(score).probabilities)
            roll = midi_to_roll(path, cfg.pianoroll)
        except MoodsongError:
            continue
        w = windows_of(roll, cfg.num_timesteps, args.stride, shifts)
        wins += w
        conds += [probs] * len(w)
        weak += len(w)
    X = np.array(wins, dtype=np.uint8)
    C = np.array(conds, dtype=np.float32)
    print(f"conditional RBM: {n_emopia} EMOPIA windows (hand labels) + {weak} pop windows (weak labels)")
    model, hist = fit_conditional_rbm(X, C, cfg, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    save_checkpoint(
        model,
        DATA / CRBM_STEM,
        dtype=torch.float16,
        **{
            "trained_on": "EMOPIA 1.0 (990 clips, hand labels) + pop_music_midi (126 files, labels from the music-emotion estimator)",
            "windows": {"emopia": n_emopia, "weak": weak},
            "epochs": args.epochs, "stride": args.stride, "shifts": args.shifts, "batch_size": args.batch_size, "lr": args.lr,
            "reconstruction_error": [round(h, 5) for h in hist],
        },
    )
    print("wrote", DATA / DEFAULT_MODEL, "and", DATA / (CRBM_STEM + ".safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
