"""Does the music fit the emotion? Quadrant hit rates of generated pieces, judged by the music-emotion estimator.

For each quadrant target (its centre on the valence/arousal plane) this
generates N pieces with four set-ups and counts how often the estimator places
the piece in the requested quadrant:

- ``baseline``:    the same model with a neutral condition (uniform quadrant weights), no steering
                   -- the peer: what the model does when told nothing about emotion;
- ``conditioned``: the conditional model alone (condition = target), plain 120 qpm / velocity 80;
- ``steered``:     conditioned + surface steering (tempo, register, mode, density, velocity, instrument);
- ``selected``:    steered, best 1 of K candidates by the estimator (what ``moodsong compose`` writes).

It also prints simple independent features (major-key share, tempo, onsets per
second, mean pitch) per quadrant, and, with ``--emopia``, the estimator's
accuracy on EMOPIA's valid split.

Usage:
    python bench/emotion_compose.py [--pieces 12] [--candidates 6] [--bars 8] [--emopia ../shared/data/emopia]
    python bench/emotion_compose.py --model src/moodsong/data/emotion_crbm     # the conditional RBM instead
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from moodsong.emotion import quadrant_center
from moodsong.emotion.music import MusicEmotionEstimator, key_estimate, score_notes
from moodsong.pipeline import generate_candidates, load_conditional_model, sample_conditional
from moodsong.representation.pianoroll import roll_to_score


def bare(model, est, va, n, bars, seed, strength=None):
    """Pieces for target ``va``; (0, 0) is the neutral condition (its quadrant weights are uniform)."""
    out = []
    for s in range(seed, seed + n):
        roll = sample_conditional(model, *va, bars * 16, strength=strength, generator=torch.Generator().manual_seed(s))
        score = roll_to_score(roll, model.config.pianoroll, qpm=120.0, velocity=80)
        out.append((score, est.predict_score(score)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pieces", type=int, default=12, help="pieces per quadrant and set-up")
    ap.add_argument("--candidates", type=int, default=6, help="K for the 'selected' set-up")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--emopia", type=str, default=None, help="EMOPIA folder: also report valid-split accuracy")
    ap.add_argument("--model", default=None, help="an emotion-conditional checkpoint (default: the shipped one)")
    ap.add_argument("--strength", type=float, default=None, help="condition strength (default: the model's own)")
    args = ap.parse_args()

    if args.emopia:
        from moodsong.emotion.music import emopia_clips

        names, notes, q, split = emopia_clips(Path(args.emopia), only="valid")
        acc = MusicEmotionEstimator.load_default().score_pieces(notes, q)  # features + CNN blend
        print(f"EMOPIA valid ({acc['n']} clips): 4Q {acc['quadrant']:.3f}  valence {acc['valence']:.3f}  arousal {acc['arousal']:.3f}")

    model = load_conditional_model(args.model)
    print(f"model: {args.model or 'shipped'} ({model.model_type}), strength {args.strength or 'default'}")
    est = MusicEmotionEstimator.load_default()
    t0 = time.time()
    rows = {}
    feats = {}
    for quad in (1, 2, 3, 4):
        v, a = quadrant_center(quad)
        base = bare(model, est, (0.0, 0.0), args.pieces, args.bars, args.seed, args.strength)
        cond = bare(model, est, (v, a), args.pieces, args.bars, args.seed, args.strength)
        _, steered = generate_candidates(v, a, bars=args.bars, count=args.pieces, seed=args.seed, model=model, estimator=est,
                                         strength=args.strength)
        selected = []
        for i in range(args.pieces):
            _, cands = generate_candidates(
                v, a, bars=args.bars, count=args.candidates, seed=args.seed + 100 * (i + 1), model=model, estimator=est,
                strength=args.strength)
            selected.append(min(cands, key=lambda c: c.distance - c.target_probability))
        rows[quad] = {
            "baseline": np.mean([e.quadrant == quad for _, e in base]),
            "conditioned": np.mean([e.quadrant == quad for _, e in cond]),
            "steered": np.mean([c.estimate.quadrant == quad for c in steered]),
            "selected": np.mean([c.estimate.quadrant == quad for c in selected]),
        }
        feats[quad] = {
            "major (cond)": np.mean([key_estimate(score_notes(s))[1] == "major" for s, _ in cond]),
            "major (steered)": np.mean([key_estimate(score_notes(c.score))[1] == "major" for c in steered]),
            "onsets/s (cond)": np.mean([e.features["onsets_per_s"] for _, e in cond]),
            "onsets/s (steered)": np.mean([c.estimate.features["onsets_per_s"] for c in steered]),
            "qpm (steered)": np.mean([c.score.tempos[0].qpm for c in steered]),
            "pitch (cond)": np.mean([e.features["pitch_mean"] for _, e in cond]),
            "pitch (steered)": np.mean([c.estimate.features["pitch_mean"] for c in steered]),
        }
    setups = ("baseline", "conditioned", "steered", "selected")
    print(f"\nquadrant hit rate ({args.pieces} pieces per cell, {args.bars} bars, selection best of {args.candidates}; chance 0.25)")
    print("        " + "".join(f"{s:>13}" for s in setups))
    for quad in rows:
        print(f"  Q{quad}    " + "".join(f"{rows[quad][s]:13.2f}" for s in setups))
    means = {s: float(np.mean([rows[q][s] for q in rows])) for s in setups}
    print("  mean  " + "".join(f"{means[s]:13.2f}" for s in setups))
    for s in setups[1:]:
        print(f"  {s} / baseline hit rate: {means[s] / max(means['baseline'], 1e-9):.2f}x")
    print("\nindependent features per requested quadrant")
    names = list(feats[1])
    print("        " + "".join(f"{n:>20}" for n in names))
    for quad in feats:
        print(f"  Q{quad}    " + "".join(f"{feats[quad][n]:20.2f}" for n in names))
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
