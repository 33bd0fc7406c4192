"""The EMOPIA anchor, re-trained on the split we have, beside moodsong's estimator.

The EMOPIA authors' best symbolic classifier is a bidirectional LSTM with
structured self-attention over MIDI-like performance tokens (note-on, note-off,
10 ms time shifts, 32 velocity bins; 388 tokens + pad), trained with Adam
(lr 1e-3, weight decay 1e-4), cosine warm restarts (T_0 = 25 epochs), batch 16,
embedding 300, LSTM 128 per direction, 16 attention hops of size 128 and a
256-unit classifier, 4-quadrant cross-entropy. They report its test accuracy
at the checkpoint with the best validation accuracy (4Q 0.684 on their 86-clip
test split, which is not in ../shared/data/emopia).

This script re-trains that model, as described, on EMOPIA's train split (876
clips) and scores it on the valid split (114 clips) after every epoch. It
reports two figures for it:

- ``last``: the final epoch (no selection),
- ``best-on-valid``: the best epoch *as scored on valid itself*, an upper bound
  that favours the anchor (it is selected on the data it is scored on);

and, in the same run, moodsong's shipped estimator on the same 114 clips
(selected by cross-validation on train only). With ``--fold K`` the held-out
clips are instead fold K of a song-grouped 5-fold split of the train split,
and moodsong's recipe is re-fitted on the other folds, like the anchors. Valence and arousal of the
anchor are read from its quadrant prediction.

Usage::

    nice -n 10 python bench/emopia_anchor.py --emopia ../shared/data/emopia --epochs 100 --seeds 0 1 2

Pool saved runs (e.g. valid and a train fold) into one comparison::

    python bench/emopia_anchor.py --pool runs/valid.json runs/fold0.json

Each LSTM epoch takes about 30 s on 2 CPU cores, 45 s per run with two runs at once (length-bucketed batches).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import symusic
import torch
from torch import nn
from tqdm.auto import tqdm

from moodsong.emotion.music import (
    MusicEmotionEstimator,
    NoteArrays,
    _fit_logistic,
    _softmax,
    emopia_clips,
    emopia_index,
    key_estimate,
    music_features,
    song_folds,
)
from moodsong.emotion.music import emopia_song as song_of

# Performance-token vocabulary (ids): note-on 0..127, note-off 128..255,
# time-shift 256..355 (10..1000 ms), velocity 356..387 (32 bins), pad 388.
NOTE_ON, NOTE_OFF, SHIFT, VELOCITY, PAD = 0, 128, 256, 356, 388
VOCAB = PAD + 1


def pedals_of(path) -> np.ndarray:
    """Sustain-pedal spans of a MIDI file, ``(n, 2)`` start/end in seconds."""
    sec = symusic.Score(str(path)).to("second")
    return np.array([(p.time, p.time + p.duration) for t in sec.tracks for p in t.pedals], dtype=np.float64).reshape(-1, 2)


def apply_sustain(notes: NoteArrays, pedals: np.ndarray) -> np.ndarray:
    """Note ends (seconds) with the sustain pedal applied, as the anchor's performance encoding does.

    A note struck while the pedal is down rings until the pedal lifts, or until the same key is struck
    again under that pedal, whichever comes first (but never shorter than played).
    """
    end = notes.onset + notes.duration
    for start, stop in pedals:
        held = np.flatnonzero((notes.onset >= start) & (notes.onset < stop))
        nxt: dict[int, float] = {}
        for i in held[::-1]:  # latest first, so nxt holds the next strike of each key
            p = int(notes.pitch[i])
            end[i] = nxt[p] if p in nxt else max(stop, end[i])
            nxt[p] = notes.onset[i]
    return end


def performance_tokens(notes: NoteArrays, end: np.ndarray | None = None) -> list[int]:
    """Notes (seconds) -> note-on / note-off / time-shift / velocity tokens, time quantised to 10 ms.

    ``end``: note ends in seconds (default onset + duration; see :func:`apply_sustain`).
    """
    end = notes.onset + notes.duration if end is None else end
    on = np.round(notes.onset * 100).astype(np.int64)
    off = np.maximum(np.round(end * 100).astype(np.int64), on + 1)
    # (time, kind, pitch, velocity); offs sort before ons at the same time so a repeated note re-strikes
    events = [(int(t), 0, int(p), 0) for t, p in zip(off, notes.pitch)]
    events += [(int(t), 1, int(p), int(v)) for t, p, v in zip(on, notes.pitch, notes.velocity)]
    events.sort()
    tokens, now, vel_bin = [], 0, -1
    for t, kind, pitch, vel in events:
        gap = t - now
        while gap > 0:
            step = min(gap, 100)
            tokens.append(SHIFT + step - 1)
            gap -= step
        now = t
        if kind == 0:
            tokens.append(NOTE_OFF + pitch)
        else:
            b = min(vel * 32 // 128, 31)
            if b != vel_bin:
                tokens.append(VELOCITY + b)
                vel_bin = b
            tokens.append(NOTE_ON + pitch)
    return tokens


class SelfAttentiveBiLSTM(nn.Module):
    """Embedding -> BiLSTM -> r-hop structured self-attention -> MLP (the anchor's architecture)."""

    def __init__(self, classes=4, embed=300, hidden=128, da=128, hops=16, mlp=256):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embed, padding_idx=PAD)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.w1 = nn.Linear(2 * hidden, da, bias=False)
        self.w2 = nn.Linear(da, hops, bias=False)
        self.head = nn.Sequential(nn.Linear(2 * hidden * hops, mlp), nn.ReLU(), nn.Linear(mlp, classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # no packing: on the CPU it is several times slower, and length-bucketed batches hold little padding
        h = self.lstm(self.embed(x))[0]
        score = self.w2(torch.tanh(self.w1(h)))  # (B, T, hops)
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        attn = torch.softmax(score.masked_fill(pad[:, :, None], -1e9), dim=1)
        return self.head(torch.einsum("bth,btd->bhd", attn, h).flatten(1))


def batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Length-bucketed batches in random order (less padding, same expected gradient)."""
    order = np.argsort(lengths + rng.uniform(0, 1, lengths.size) * lengths.std() * 0.1)
    chunks = [order[i : i + size] for i in range(0, order.size, size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def collate(seqs: list[list[int]], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(seqs[i]) for i in idx])
    x = torch.full((len(idx), int(lens.max())), PAD, dtype=torch.long)
    for row, i in enumerate(idx):
        x[row, : len(seqs[i])] = torch.tensor(seqs[i])
    return x, lens


@torch.no_grad()
def predict(model, seqs, size=16) -> np.ndarray:
    model.eval()
    out = []
    order = np.argsort([len(s) for s in seqs])
    for i in range(0, len(seqs), size):
        idx = order[i : i + size]
        out.append((idx, model(*collate(seqs, idx)).argmax(1).numpy() + 1))
    pred = np.zeros(len(seqs), dtype=np.int64)
    for idx, p in out:
        pred[idx] = p
    return pred


def scores(pred: np.ndarray, q: np.ndarray) -> dict[str, float]:
    def hv(a):
        return np.isin(a, (1, 4))
    def ha(a):
        return np.isin(a, (1, 2))
    return {"4Q": float(np.mean(pred == q)), "V": float(np.mean(hv(pred) == hv(q))), "A": float(np.mean(ha(pred) == ha(q)))}


def baseline_features(notes: NoteArrays) -> np.ndarray:
    """The authors' logistic baseline inputs: mean note length (s), mean velocity, notes per beat, key (one-hot of 24).

    Their key and beat density came from the MATLAB MIR toolbox; here the key is moodsong's
    Krumhansl-Kessler estimate and a beat is 0.5 s (EMOPIA's transcriptions are all written at 120 qpm).
    """
    tonic, mode, _ = key_estimate(notes)
    span = max(float((notes.onset + notes.duration).max() - notes.onset.min()), 1e-3)
    key = np.zeros(24)
    key[tonic + (12 if mode == "minor" else 0)] = 1
    return np.concatenate([[notes.duration.mean(), notes.velocity.mean(), len(notes) / (span / 0.5)], key])


def logistic_baseline(X_tr, q_tr, X_va) -> np.ndarray:
    """Multinomial logistic regression, L2 as scikit-learn's default C = 1, on standardised inputs."""
    mean, scale = X_tr.mean(0), X_tr.std(0) + 1e-9
    W = _fit_logistic((X_tr - mean) / scale, q_tr - 1, 4, l2=1.0 / len(q_tr))
    Z = np.hstack([(X_va - mean) / scale, np.ones((len(X_va), 1))])
    return _softmax(Z @ W).argmax(1) + 1


def train_anchor(seqs_tr, q_tr, seqs_va, q_va, epochs, seed, batch=16, threads=1) -> dict:
    """One anchor run: ``{"history": [per-epoch figures], "last": ..., "best_on_valid": ...}`` (with predictions)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SelfAttentiveBiLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=25)
    y = torch.tensor(q_tr - 1)
    lengths = np.array([len(s) for s in seqs_tr])
    history, best = [], None
    for epoch in tqdm(range(epochs), desc=f"anchor seed {seed}", unit="epoch", position=seed):
        model.train()
        t0, total = time.perf_counter(), 0.0
        for idx in batches(lengths, batch, rng):
            loss = nn.functional.cross_entropy(model(*collate(seqs_tr, idx)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        row = {"epoch": epoch + 1, "train_loss": total / len(seqs_tr), "seconds": time.perf_counter() - t0}
        pred = predict(model, seqs_va)
        row.update(scores(pred, q_va))
        history.append(row)
        tqdm.write(json.dumps({"seed": seed, **row}))
        if best is None or row["4Q"] > best["4Q"]:
            best = {**row, "pred": pred.tolist()}
    return {"history": history, "last": {**history[-1], "pred": pred.tolist()}, "best_on_valid": best}


def song_bootstrap(a: np.ndarray, b: np.ndarray, songs: list[str], rounds=10000, seed=0) -> tuple[float, float, float]:
    """Accuracy difference mean(a) - mean(b) of two 0/1 arrays on the same clips, and its 95% interval
    from resampling whole songs (clips of one song are not independent)."""
    rng = np.random.default_rng(seed)
    uniq = sorted(set(songs))
    groups = [np.flatnonzero(np.array(songs) == s) for s in uniq]
    d = a.astype(float) - b.astype(float)
    sums = np.array([d[g].sum() for g in groups])
    sizes = np.array([g.size for g in groups])
    pick = rng.integers(0, len(uniq), size=(rounds, len(uniq)))
    diffs = sums[pick].sum(1) / sizes[pick].sum(1)
    return float(d.mean()), float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def pool_runs(paths: list[str]) -> None:
    """Pool several saved runs (different held-out clips) into one comparison."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    q = np.concatenate([r["labels"] for r in runs])
    songs = [f"{i}:{song_of(c)}" for i, r in enumerate(runs) for c in r["clips"]]
    ours = np.concatenate([r["moodsong"]["pred"] for r in runs]) == q
    print(f"pooled: {q.size} held-out clips, {len(set(songs))} songs ({', '.join(r['held_out'] for r in runs)})")
    print(f"  moodsong estimator          4Q {ours.mean():.3f}")
    peers = {"logistic baseline": [np.asarray(r["logistic_baseline"]["pred"]) for r in runs]}
    for seed in runs[0]["anchor"]:
        for kind in ("last", "best_on_valid"):
            peers[f"LSTM seed {seed} {kind}"] = [np.asarray(r["anchor"][seed][kind]["pred"]) for r in runs]
    for name, preds in peers.items():
        hit = np.concatenate(preds) == q
        d = song_bootstrap(ours, hit, songs)
        print(f"  {name:<28} 4Q {hit.mean():.3f}; moodsong minus it {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emopia", default="../shared/data/emopia", help="EMOPIA folder (midis/, label.csv, split.csv)")
    ap.add_argument("--epochs", type=int, default=100, help="epochs per anchor run (4 warm-restart cycles)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="one anchor run per seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs (seeds) trained at once, one process each")
    ap.add_argument("--fold", type=int, default=None,
                    help="instead of valid, hold out this song-grouped fold (0-4) of the train split; moodsong's "
                         "recipe (85 features, L2 0.1, CNN ensemble of 2, blend 0.25) is re-fitted on the other folds")
    ap.add_argument("--fold-seed", type=int, default=0, help="fold assignment (as in scripts/train_emotion_models.py)")
    ap.add_argument("--out", default=None, help="write every epoch's figures here (JSON)")
    ap.add_argument("--pool", nargs="+", metavar="JSON", help="only pool saved --out files (different held-out clips)")
    args = ap.parse_args()
    if args.pool:
        return pool_runs(args.pool)
    torch.set_num_threads(args.threads)

    names, notes, q, split = emopia_clips(args.emopia)
    split = np.array(split)
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "valid")
    where = "EMOPIA valid"
    if args.fold is not None:  # a held-out fold of the train split: more held-out songs than valid alone
        fold = song_folds([song_of(names[i]) for i in tr], 5, args.fold_seed)
        tr, va = tr[fold != args.fold], tr[fold == args.fold]
        where = f"train-split fold {args.fold} (fold seed {args.fold_seed})"
    paths = {name: path for name, path, _, _ in emopia_index(args.emopia)}
    seqs = [performance_tokens(n, apply_sustain(n, pedals_of(paths[m]))) for m, n in zip(names, notes)]
    lens = np.array([len(s) for s in seqs])
    print(f"train {tr.size} clips, held out ({where}) {va.size}; tokens per clip median {int(np.median(lens))}, max {lens.max()}")

    if args.fold is None:
        est = MusicEmotionEstimator.load_default()
    else:
        X = np.array([music_features(notes[i]) for i in tr])
        est = MusicEmotionEstimator(l2=0.1, sequence_weight=0.25).fit(X, q[tr])
        est.fit_sequence([notes[i] for i in tr], q[tr], seeds=2, progress=True)
    ours_pred = np.array([est.predict_notes(notes[i]).quadrant for i in va])
    ours = scores(ours_pred, q[va])
    print(f"moodsong estimator on {where}:", json.dumps(ours))

    B = np.array([baseline_features(n) for n in notes])
    lr = scores(logistic_baseline(B[tr], q[tr], B[va]), q[va])
    print(f"anchor logistic baseline on {where}:", json.dumps(lr))

    job = ([seqs[i] for i in tr], q[tr], [seqs[i] for i in va], q[va], args.epochs)
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = {s: pool.submit(train_anchor, *job, s, threads=args.threads) for s in args.seeds}
            runs = {s: f.result() for s, f in futures.items()}
    else:
        runs = {s: train_anchor(*job, s, threads=args.threads) for s in args.seeds}
    last = np.array([[r["last"][k] for k in ("4Q", "V", "A")] for r in runs.values()])
    best = np.array([[r["best_on_valid"][k] for k in ("4Q", "V", "A")] for r in runs.values()])
    def fmt(a):
        return " / ".join(f"{x:.3f}" for x in a)
    print(f"\n{where} ({va.size} clips), 4Q / V / A")
    print(f"  moodsong estimator                         {fmt([ours[k] for k in ('4Q', 'V', 'A')])}")
    print(f"  anchor logistic baseline (4 features)      {fmt([lr[k] for k in ('4Q', 'V', 'A')])}")
    print(f"  anchor BiLSTM-attention, last epoch        {fmt(last.mean(0))}   (mean of {len(runs)} seeds)")
    print(f"  anchor, best epoch chosen on these clips   {fmt(best.mean(0))}   (optimistic)")
    for seed, r in runs.items():
        print(f"    seed {seed}: last {fmt([r['last'][k] for k in ('4Q', 'V', 'A')])}, "
              f"best-on-held-out {fmt([r['best_on_valid'][k] for k in ('4Q', 'V', 'A')])} at epoch {r['best_on_valid']['epoch']}")
    songs = [song_of(names[i]) for i in va]
    def hit(p):
        return np.asarray(p) == q[va]
    print(f"\n4Q difference, moodsong minus anchor, 95% interval by resampling the {len(set(songs))} held-out songs:")
    lr_pred = logistic_baseline(B[tr], q[tr], B[va])
    d = song_bootstrap(hit(ours_pred), hit(lr_pred), songs)
    print(f"  vs logistic baseline:          {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")
    for seed, r in runs.items():
        for kind in ("last", "best_on_valid"):
            d = song_bootstrap(hit(ours_pred), hit(r[kind]["pred"]), songs)
            print(f"  vs BiLSTM seed {seed} {kind:<14} {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "held_out": where, "clips": [names[i] for i in va], "labels": q[va].tolist(),
            "moodsong": {**ours, "pred": ours_pred.tolist()}, "logistic_baseline": {**lr, "pred": lr_pred.tolist()},
            "anchor": runs}, indent=1))


if __name__ == "__main__":
    main()
