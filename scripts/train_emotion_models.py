"""Train the shipped emotion models from ../shared/data (run once; results go to src/moodsong/data/).

1. The music-emotion estimator (moodsong.emotion.music) on EMOPIA's train split:
   the logistic feature heads (L2 penalty chosen by song-grouped 5-fold
   cross-validation on the train split only), boosted trees averaged with them,
   and the temporal CNN ensemble (moodsong.emotion.music_cnn; transposition +
   random-crop augmentation). The valence head also learns from score-like
   versions of the train clips (quantised, one velocity, other tempo, key and
   voicing: --plain-versions), from melody-only versions of them and of POP909's
   train songs (their top line; --no-melody to leave out), and from POP909's
   train songs, whose annotated key is a weak valence label (--pop909-weight).
   A second valence expert for scores and lone melodies learns from the same
   versions with POP909's keys weighing more (--score-pop909-weight), and a
   gate weighs the two experts by how much a piece looks like a played
   performance (--gate-l2). The script prints the
   song-grouped CV of the previous recipe and of this one (--cv-cnn: with one CNN
   per fold). With --select-weight the CNN/feature blend weight is chosen by the
   same CV. The valid split is scored once, at the end (the model that was
   shipped before beside the new one), and never used for any choice.
2. The emotion-conditional RBM (moodsong.models.conditional_rbm) on windows of
   all EMOPIA clips (hand labels, one-hot) plus the pop_music_midi corpus with
   weak labels (the estimator's quadrant probabilities for each file).

Usage:
    nice -n 10 python scripts/train_emotion_models.py [--shared ../shared/data] [--epochs 6]
    nice -n 10 python scripts/train_emotion_models.py --skip-crbm --cnn-seeds 2 --cv-cnn   # estimator only
    nice -n 10 python scripts/train_emotion_models.py --skip-crbm --cnn-seeds 2 --cv-cnn --l2 0.1   # no L2 search
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from moodsong.emotion.music import (
    DEFAULT_MODEL,
    MusicEmotionEstimator,
    emopia_clips,
    emopia_index,
    melody_version,
    music_features,
    note_windows,
    pop909_songs,
    random_plain_version,
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


def choose_weight(notes, X, q, songs, extra, recipe, l2, config, grid=(0.0, 0.25, 0.5, 0.75, 1.0), folds=5):
    """Song-grouped CV of the CNN/feature blend weight (one CNN per fold, seed 0)."""
    cnns = FoldCNNs(notes, q, songs, config, folds)
    cv = {w: cv_recipe(X, q, songs, extra, recipe, l2, folds=folds, cnn=cnns, weight=w)["quadrant"] for w in grid}
    print("  CV 4Q accuracy by blend weight: " + "  ".join(f"w={w}: {a:.3f}" for w, a in cv.items()))
    best = max(grid, key=lambda w: (cv[w], -abs(w - 0.5)))
    return best, cv, cnns


@dataclass
class Recipe:
    """How the estimator's feature model is fitted. ``Recipe(False, 0.0, False)`` is the recipe shipped
    before issue 14 (logistic heads on EMOPIA's clips as they are)."""

    plain: bool = True  # the valence head also learns from score-like versions of the clips
    pop909_weight: float = 0.3  # each POP909 train song's windows weigh this many clips in total (valence)
    trees: bool = True  # boosted trees averaged with the logistic heads
    melody: bool = True  # the valence head also learns from melody-only versions (clips and POP909 windows)
    score_pop909_weight: float = 3.0  # weight of a POP909 song for the score expert; 0: no score expert
    gate_l2: float = 0.1  # L2 of the gate between the experts


@dataclass
class Extra:
    """Extra valence rows: score-like versions ``plain`` and melody-only versions ``melody`` (versions,
    clips, features) of the train clips, POP909 windows ``pop`` with labels ``pop_major`` and per-window
    weights ``pop_unit`` (1 per song), and score-like versions of the top line of POP909's songs
    (``pop_melody``, same fields)."""

    plain: np.ndarray
    melody: np.ndarray
    pop: np.ndarray
    pop_major: np.ndarray
    pop_unit: np.ndarray
    pop_melody: np.ndarray
    pop_melody_major: np.ndarray
    pop_melody_unit: np.ndarray


def fit_recipe(X, q, plain, extra: Extra, recipe: Recipe, l2: float, melody=None) -> MusicEmotionEstimator:
    """The feature model of ``recipe`` fitted on clips ``X`` (labels ``q``; ``plain`` / ``melody``: their
    score-like and melody-only versions, ``melody`` defaulting to ``extra.melody``)."""
    melody = extra.melody if melody is None else melody
    v = np.isin(q, (1, 4))
    versions = (list(plain) if recipe.plain else []) + (list(melody) if recipe.melody else [])
    rows, labels, weights = list(versions), [v] * len(versions), [np.ones(len(v))] * len(versions)
    pop = [(extra.pop, extra.pop_major, extra.pop_unit)]
    if recipe.melody:
        pop.append((extra.pop_melody, extra.pop_melody_major, extra.pop_melody_unit))
    pop = [p for p in pop if len(p[0])]
    if recipe.pop909_weight > 0:
        for r, m, u in pop:
            rows.append(r)
            labels.append(m)
            weights.append(recipe.pop909_weight * u)
    est = MusicEmotionEstimator(l2=l2, tree_weight=0.5 if recipe.trees else 0.0, gate_l2=recipe.gate_l2)
    if rows:
        est.fit(X, q, np.concatenate(rows), np.concatenate(labels), np.concatenate(weights))
    else:
        est.fit(X, q)
    if recipe.trees:
        # Trees on the clips alone: with the score-like versions their valence fell in CV (0.781 vs 0.796).
        est.fit_trees(X, q)
    if recipe.score_pop909_weight > 0 and versions and pop:
        # The score expert learns from the versions and from POP909's weak labels weighing 10x more than
        # in the performance heads: the key is the cue that travels to notated music.
        rows_s = versions + [r for r, _, _ in pop]
        labels_s = [v] * len(versions) + [m for _, m, _ in pop]
        weights_s = [np.ones(len(v))] * len(versions) + [recipe.score_pop909_weight * u for _, _, u in pop]
        est.fit_score_expert(X, q, np.concatenate(versions), np.concatenate(rows_s), np.concatenate(labels_s),
                             np.concatenate(weights_s))
    return est


def cv_recipe(X, q, songs, extra: Extra, recipe: Recipe, l2: float, seeds=(0, 1), folds=5, cnn=None, weight=0.25):
    """Song-grouped CV on the train split: 4Q / valence / arousal, and valence on the held-out clips'
    first score-like and first melody-only version. ``cnn``: per fold seed 0, the fold's CNN ensemble,
    blended at ``weight``."""
    acc = []
    for seed in seeds:
        f = song_folds(songs, folds, seed)
        for k in range(folds):
            tr, te = np.flatnonzero(f != k), np.flatnonzero(f == k)
            est = fit_recipe(X[tr], q[tr], extra.plain[:, tr], extra, recipe, l2, melody=extra.melody[:, tr])
            if cnn is not None:
                est.sequence_, est.sequence_weight = cnn[k], weight
                r = est.score_pieces(cnn.notes_of(te), q[te])
            else:
                r = est.score(X[te], q[te])
            plain_v = est.predict_features(extra.plain[0, te])["valence"] >= 0
            melody_v = est.predict_features(extra.melody[0, te])["valence"] >= 0
            acc.append([r["quadrant"] * te.size, r["valence"] * te.size, r["arousal"] * te.size,
                        np.sum(plain_v == np.isin(q[te], (1, 4))), np.sum(melody_v == np.isin(q[te], (1, 4)))])
        if cnn is not None:
            break
    a = np.sum(acc, 0) / (len(q) * (1 if cnn is not None else len(seeds)))
    return dict(zip(("quadrant", "valence", "arousal", "valence_score_like", "valence_melody"), map(float, a)))


class FoldCNNs(list):
    """One CNN per fold of the song-grouped split (fold seed 0), with the clips' notes."""

    def __init__(self, notes, q, songs, config, folds=5):
        super().__init__()
        self.notes = notes
        f = song_folds(songs, folds, 0)
        for k in range(folds):
            tr = np.flatnonzero(f != k)
            net = fit_music_cnn([(n.onset, n.duration, n.pitch, n.velocity) for n in (notes[i] for i in tr)], q[tr],
                                config)
            self.append(MusicCNNEnsemble([net], config))
            print(f"  CNN of fold {k} trained", flush=True)

    def notes_of(self, idx):
        return [self.notes[i] for i in idx]


def extra_rows(notes, X, shared: Path, versions: int, seed: int) -> Extra:
    """Score-like and melody-only versions of the train clips, and POP909's train-song windows (30 s) with
    key labels, as they are and as score-like versions of their top line."""
    rng = np.random.default_rng(seed)
    plain = np.array([[music_features(random_plain_version(n, rng)) for n in notes] for _ in range(max(versions, 1))])
    melody = np.array([[music_features(random_plain_version(melody_version(n), rng)) for n in notes]
                       for _ in range(max(versions, 1))])
    pop, major, unit, mel, mel_major, mel_unit = [], [], [], [], [], []
    root = shared / "pop909"
    if root.is_dir():
        _, songs, is_major = pop909_songs(root, "train")
        for n, m in zip(tqdm(songs, desc="POP909 windows", unit="song"), is_major):
            w = note_windows(n) or [n]
            pop += [music_features(x) for x in w]
            major += [m] * len(w)
            unit += [1.0 / len(w)] * len(w)
            top = melody_version(n)
            w = note_windows(top, min_notes=10) or [top]
            mel += [music_features(random_plain_version(x, rng)) for x in w]
            mel_major += [m] * len(w)
            mel_unit += [1.0 / len(w)] * len(w)
        print(f"POP909 train: {len(songs)} songs ({int(is_major.sum())} major), {len(pop)} windows of 30 s, "
              f"{len(mel)} of their top line")
    else:
        print(f"no POP909 at {root}: no weak valence labels")
    d = X.shape[1]
    return Extra(plain, melody, np.array(pop).reshape(-1, d), np.array(major, bool), np.array(unit),
                 np.array(mel).reshape(-1, d), np.array(mel_major, bool), np.array(mel_unit))


def choose_l2(X, q, songs, extra, recipe, grid=(0.03, 0.1, 0.3)):
    """L2 of the logistic heads by song-grouped 5-fold CV (fold seed 0) of the whole feature model."""
    cv = {}
    for l2 in grid:
        cv[l2] = cv_recipe(X, q, songs, extra, recipe, l2, seeds=(0,))["quadrant"]
        print(f"  l2={l2:<5} cv 4Q accuracy {cv[l2]:.3f}", flush=True)
    best = max(grid, key=lambda x: cv[x])
    return best, cv[best]


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
    ap.add_argument("--sequence-weight", type=float, default=0.25,
                    help="CNN share of the blend (unless --select-weight)")
    ap.add_argument("--select-weight", action="store_true", help="choose the blend weight by song-grouped CV on train")
    ap.add_argument("--plain-versions", type=int, default=2, help="score-like versions of each train clip (valence)")
    ap.add_argument("--pop909-weight", type=float, default=Recipe.pop909_weight,
                    help="weight of each POP909 train song (key -> valence) in clips; 0: none")
    ap.add_argument("--no-melody", action="store_true", help="no melody-only versions for the valence heads")
    ap.add_argument("--score-pop909-weight", type=float, default=Recipe.score_pop909_weight,
                    help="weight of each POP909 song for the score expert; 0: no score expert")
    ap.add_argument("--l2", type=float, default=None,
                    help="L2 of the logistic heads (default: chosen by song-grouped CV among 0.03, 0.1, 0.3)")
    ap.add_argument("--gate-l2", type=float, default=Recipe.gate_l2, help="L2 of the gate between the experts")
    ap.add_argument("--cv-cnn", action="store_true", help="also report song-grouped CV with one CNN per fold")
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
        extra = extra_rows([notes[i] for i in tr], X, shared, args.plain_versions, args.seed)
        recipe = Recipe(plain=args.plain_versions > 0, pop909_weight=args.pop909_weight if len(extra.pop) else 0.0,
                        melody=not args.no_melody, score_pop909_weight=args.score_pop909_weight,
                        gate_l2=args.gate_l2)
        before = Recipe(plain=False, pop909_weight=0.0, trees=False, melody=False, score_pop909_weight=0.0)
        # the recipe shipped before the melody versions and the score expert (issue 14, 2026-12-02)
        single = Recipe(plain=recipe.plain, pop909_weight=recipe.pop909_weight, melody=False, score_pop909_weight=0.0)
        if args.l2 is None:
            print("choosing L2 by song-grouped 5-fold CV on the train split:")
            l2, cv = choose_l2(X[tr], q[tr], songs, extra, recipe)
        else:
            l2, cv = args.l2, None
        config = MusicCNNConfig(epochs=args.cnn_epochs)
        fmt = ("4Q {quadrant:.3f}  valence {valence:.3f}  arousal {arousal:.3f}  "
               "valence of score-like versions {valence_score_like:.3f}, of melody versions {valence_melody:.3f}")
        cv_report = {}
        for name, r, lam in (("previous recipe (l2 0.1)", before, 0.1), (f"one valence expert (l2 {l2})", single, l2),
                             (f"this recipe (l2 {l2})", recipe, l2)):
            cv_report[name] = cv_recipe(X[tr], q[tr], songs, extra, r, lam)
            print(f"song-grouped CV on train (fold seeds 0, 1), feature model, {name}: "
                  + fmt.format(**cv_report[name]))
        weight, wcv, cnns = args.sequence_weight, None, None
        if args.select_weight:
            print("choosing the CNN blend weight by song-grouped 5-fold CV on the train split:")
            weight, wcv, cnns = choose_weight([notes[i] for i in tr], X[tr], q[tr], songs, extra, recipe, l2, config)
        if args.cv_cnn:
            cnns = cnns or FoldCNNs([notes[i] for i in tr], q[tr], songs, config)
            for name, r, lam in (("previous recipe", before, 0.1), ("one valence expert", single, l2),
                                 ("this recipe", recipe, l2)):
                cv_report[name + " + CNN"] = cv_recipe(X[tr], q[tr], songs, extra, r, lam, cnn=cnns, weight=weight)
                print(f"song-grouped CV on train (fold seed 0), {name} + CNN w={weight}: "
                      + fmt.format(**cv_report[name + " + CNN"]))
        previous = MusicEmotionEstimator.load(DATA / DEFAULT_MODEL) if (DATA / DEFAULT_MODEL).is_file() else None
        est = fit_recipe(X[tr], q[tr], extra.plain, extra, recipe, l2)
        est.sequence_weight = weight
        feat_valid = est.score(X[va], q[va])
        print(f"EMOPIA valid, feature model only: 4Q {feat_valid['quadrant']:.3f}  "
              f"valence {feat_valid['valence']:.3f}  arousal {feat_valid['arousal']:.3f}")
        est.fit_sequence([notes[i] for i in tr], q[tr], config, seeds=args.cnn_seeds, progress=True)
        valid = est.score_pieces([notes[i] for i in va], q[va])
        print(f"EMOPIA valid (blend w={weight}): 4Q {valid['quadrant']:.3f}  valence {valid['valence']:.3f}  "
              f"arousal {valid['arousal']:.3f} (n={valid['n']})")
        if previous is not None:
            old = previous.score_pieces([notes[i] for i in va], q[va])
            print(f"EMOPIA valid, the model shipped before: 4Q {old['quadrant']:.3f}  "
                  f"valence {old['valence']:.3f}  arousal {old['arousal']:.3f}")
        def rnd(d):
            return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
        est.info_ = {
            "trained_on": "EMOPIA 1.0 train split (876 clips, CC BY 4.0); valence also on score-like and melody-only "
                          "versions of them and on POP909 train songs (MIT) with their annotated key as a weak label; "
                          "a score expert for valence, gated by how much a piece looks like a performance",
            "features": len(X[0]),
            "quadrant_head": est.quadrant_head,
            "recipe": vars(recipe) | {"plain_versions": args.plain_versions, "pop909_windows": len(extra.pop)},
            "trees": {"iterations": 200, "learning_rate": 0.05, "leaves": 15, "weight": est.tree_weight},
            "l2": l2,
            "l2_cv_accuracy": None if cv is None else round(cv, 4),
            "cv": {k: rnd(v) for k, v in cv_report.items()},
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
    model, hist = fit_conditional_rbm(X, C, cfg, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                      seed=args.seed)
    save_checkpoint(
        model,
        DATA / CRBM_STEM,
        dtype=torch.float16,
        **{
            "trained_on": "EMOPIA 1.0 (990 clips, hand labels) + pop_music_midi (126 files, labels from the "
                          "music-emotion estimator)",
            "windows": {"emopia": n_emopia, "weak": weak},
            "epochs": args.epochs, "stride": args.stride, "shifts": args.shifts, "batch_size": args.batch_size,
            "lr": args.lr,
            "reconstruction_error": [round(h, 5) for h in hist],
        },
    )
    print("wrote", DATA / DEFAULT_MODEL, "and", DATA / (CRBM_STEM + ".safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
