"""WaveNet-NADE on JSB Chorales: GPU speed-up, a configuration sweep, and per-step ensembles, in one run.

Made for a session lent a CUDA machine (it also runs on CPU, slowly). Three parts:

1. ``--speed``: the shipped JSB configuration trains a few epochs on CUDA and on the CPU
   (all cores) of the same machine; prints seconds per epoch and the ratio.
2. The sweep: each configuration in ``CONFIGS`` trains in its own process, all at
   once (the models are small; one GPU holds them all), with ``--minutes`` of
   training each, early stopping on validation NLL and the best epoch kept.
3. Evaluation: exact test NLL per step of every run, and of per-step mixtures
   ``p(v_t | v_<t) = 1/K sum_k p_k(v_t | v_<t)`` (itself an exact, normalised
   autoregressive model). Members are chosen greedily on the *validation* split
   only; the test split is read once, for the table.

    python bench/jsb_sweep.py --data ../shared/data/polyphonic/jsb_chorales.pkl --out runs/sweep --minutes 5
    python bench/jsb_sweep.py --data jsb_chorales.pkl --out runs/sweep --evaluate-only   # re-read finished runs
    python bench/jsb_sweep.py --data jsb_chorales.pkl --out runs/speed --speed --minutes 0

The other three benchmarks of the same paper (files with train and valid splits only: the table then has no test
column, and the frame accuracy is measured on valid) take longer crops, since their pieces are long:

    for d in nottingham musedata piano_midi; do
        python bench/jsb_sweep.py --data ../shared/data/polyphonic/${d}_trainvalid.pkl --out runs/sweep-$d \
            --max-len 256 --only c64-h300-d50,c128-h300-d50,c96-h200-d40 --minutes 20 &
    done; wait
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from moodsong.corpora.corpus import load_polyphonic
from moodsong.evaluation.likelihood import frame_accuracy, load_benchmark, pad_batch
from moodsong.models.checkpoint import load_checkpoint
from moodsong.training.sequence import TemporalTrainConfig, train_sequence_model

BASE = dict(channels=48, hidden=100, dropout=0.25, stacks=2, lr=2e-3, batch=8, transpose=6, seed=0)
CONFIGS = {
    "shipped": {**BASE},
    "c64-h150-d30": dict(BASE, channels=64, hidden=150, dropout=0.3),
    "c96-h200-d40": dict(BASE, channels=96, hidden=200, dropout=0.4),
    "c96-h200-d40-s1": dict(BASE, channels=96, hidden=200, dropout=0.4, seed=1),
    "c128-h300-d50": dict(BASE, channels=128, hidden=300, dropout=0.5),
    "c64-h300-d50": dict(BASE, channels=64, hidden=300, dropout=0.5),
    "c128-h150-d50-x3": dict(BASE, channels=128, hidden=150, dropout=0.5, stacks=3),
    "c96-h200-d40-b16": dict(BASE, channels=96, hidden=200, dropout=0.4, lr=1e-3, batch=16),
}


def model_config(c: dict) -> dict:
    dil = [1, 2, 4, 8, 16, 32] * c["stacks"]
    return {"channels": c["channels"], "skip_channels": 2 * c["channels"], "dilations": dil,
            "nade_hidden": c["hidden"], "dropout": c["dropout"]}


def train_one(name: str, c: dict, data: str, out: Path, minutes: float, device: str, epochs: int = 100000,
              patience: int = 40, resume: bool = False, max_len: int = 128) -> list[dict]:
    train, valid = load_benchmark(data, "train"), load_benchmark(data, "valid")
    tc = TemporalTrainConfig(epochs=epochs, lr=c["lr"], batch_size=c["batch"], max_len=max_len, transpose=c["transpose"],
                             patience=patience, max_minutes=minutes, seed=c["seed"], device=device)
    log_path = out / name / "log.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as f:
        _, hist = train_sequence_model("wavenet", train, valid, out / name, model_config(c), tc, source=data,
                                       resume=resume, overwrite=not resume, progress=False, log=lambda s: print(s, file=f, flush=True))
    return hist


@torch.no_grad()
@torch.no_grad()
def step_log_probs(model, seqs) -> list[np.ndarray]:
    """log p(v_t | v_<t) of every frame, one array per piece."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(seqs), 16):
        group = seqs[i: i + 16]
        v, mask = pad_batch(group, dev)
        lp = model.log_prob(v, mask).float().cpu().numpy()
        out += [lp[j, : len(s)] for j, s in enumerate(group)]
    return out


def mixture_nll(members: list[list[np.ndarray]]) -> float:
    """NLL per step of the per-step mixture of ``members`` (each: per-piece log-prob arrays)."""
    k = len(members)
    tot, n = 0.0, 0
    for piece in zip(*members):
        lp = np.stack(piece)  # (K, T)
        m = lp.max(0)
        tot -= float((m + np.log(np.exp(lp - m).sum(0)) - math.log(k)).sum())
        n += lp.shape[1]
    return tot / n if n else math.nan  # no frames: a file without that split


def greedy_ensemble(val: dict[str, list[np.ndarray]], max_members: int = 8) -> list[str]:
    """Forward selection (with replacement) of members by validation NLL of the mixture."""
    chosen: list[str] = []
    best = math.inf
    while len(chosen) < max_members:
        trial = {n: mixture_nll([val[m] for m in chosen + [n]]) for n in val}
        n, score = min(trial.items(), key=lambda kv: kv[1])
        if score >= best - 1e-4:
            break
        chosen.append(n)
        best = score
    return chosen


def speed(data: str, out: Path, epochs: int) -> None:
    c = CONFIGS["shipped"]
    rows = {}
    for device in ("cuda", "cpu"):
        if device == "cuda" and not torch.cuda.is_available():
            print("no CUDA device: speed check skipped")
            return
        t0 = time.perf_counter()
        hist = train_one(f"speed-{device}", c, data, out, 0, device, epochs=epochs if device == "cuda" else max(2, epochs // 4))
        per = [h["seconds"] for h in hist[1:]] or [hist[0]["seconds"]]  # the first epoch pays for start-up
        rows[device] = float(np.median(per))
        print(f"{device}: {len(hist)} epochs in {time.perf_counter() - t0:.1f} s, median {rows[device]:.2f} s/epoch "
              f"(threads {torch.get_num_threads()}), last val NLL {hist[-1]['val_nll']:.3f}", flush=True)
    print(f"GPU speed-up per epoch (shipped JSB configuration, training + validation + checkpoints): "
          f"{rows['cpu'] / rows['cuda']:.1f}x", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="Benchmark pickle/JSON (train/valid/test).")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--minutes", type=float, default=5.0, help="Training minutes per configuration.")
    ap.add_argument("--only", default="", help="Comma-separated configuration names (default: all).")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--speed", action="store_true", help="Only the GPU/CPU seconds-per-epoch check.")
    ap.add_argument("--speed-epochs", type=int, default=12)
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--resume", action="store_true", help="Continue the runs in --out (their last.* checkpoints).")
    ap.add_argument("--lr", type=float, default=0.0, help="Override every configuration's learning rate.")
    ap.add_argument("--max-len", type=int, default=128, help="Random crop of each training piece, in steps.")
    ap.add_argument("--transpose", type=int, default=-1, help="Override every configuration's transposition range.")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # a child process: train this configuration
    args = ap.parse_args()
    for c in CONFIGS.values():
        c.update({"lr": args.lr} if args.lr else {}, **({"transpose": args.transpose} if args.transpose >= 0 else {}))
    if args.one:
        train_one(args.one, CONFIGS[args.one], args.data, args.out, args.minutes, args.device, resume=args.resume,
                  max_len=args.max_len)
        return 0
    if args.speed:
        speed(args.data, args.out, args.speed_epochs)
        return 0
    names = [n for n in CONFIGS if not args.only or n in args.only.split(",")]
    if not args.evaluate_only:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs = [subprocess.Popen([sys.executable, __file__, "--data", args.data, "--out", str(args.out), "--minutes",
                                   str(args.minutes), "--device", args.device, "--one", n, "--lr", str(args.lr), "--max-len", str(args.max_len),
                                   "--transpose", str(args.transpose)] + ["--resume"] * args.resume, env=env) for n in names]
        for p in procs:
            p.wait()
    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    valid = load_benchmark(args.data, "valid")
    # the *_trainvalid files of Nottingham, MuseData and Piano-midi hold no test split: report valid only
    test = load_benchmark(args.data, "test") if load_polyphonic(args.data).get("test") else None
    val_lp, test_lp, rows = {}, {}, []
    for n in names:
        path = args.out / n / "model"
        if not path.with_suffix(".json").exists():
            print(f"{n}: no model")
            continue
        model, meta, _ = load_checkpoint(path, map_location=device)
        val_lp[n] = step_log_probs(model, valid)
        test_lp[n] = step_log_probs(model, test) if test is not None else [np.zeros(0)]
        hist = meta.get("history", [])
        rows.append((n, meta.get("epoch"), len(hist), float(np.median([h["seconds"] for h in hist])) if hist else 0.0,
                     mixture_nll([val_lp[n]]), mixture_nll([test_lp[n]])))
    print(f"\n{'run':<20} {'best ep':>7} {'epochs':>6} {'s/epoch':>7} {'valid NLL':>9} {'test NLL':>9}")
    for r in sorted(rows, key=lambda r: r[4]):
        print(f"{r[0]:<20} {r[1]:>7} {r[2]:>6} {r[3]:>7.2f} {r[4]:>9.3f} {r[5]:>9.3f}")
    chosen = greedy_ensemble(val_lp)
    ens_val = mixture_nll([val_lp[m] for m in chosen])
    ens_test = mixture_nll([test_lp[m] for m in chosen]) if test is not None else math.nan
    print(f"\nper-step mixture of {chosen} (chosen on valid): valid {ens_val:.3f}, test {ens_test:.3f} nats/step")
    best = min(rows, key=lambda r: r[4])[0]
    model, _, _ = load_checkpoint(args.out / best / "model", map_location=device)
    acc = frame_accuracy(model, test if test is not None else valid, samples=10)["accuracy"]
    print(f"best single run by valid ({best}): expected frame accuracy on {'test' if test is not None else 'valid'} "
          f"{acc:.3f}")
    summary = {"runs": rows, "ensemble": chosen, "ensemble_valid": ens_val, "ensemble_test": ens_test,
               "best": best, "best_frame_accuracy": acc}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
