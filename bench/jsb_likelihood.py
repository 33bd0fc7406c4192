"""JSB Chorales test NLL (nats per step) and expected frame-level accuracy of moodsong's models, beside published figures.

The peers are the published results on the same split and representation
(88 keys, one frame per quarter note, test split of 77 chorales) and, run here on
the same input, a per-key Bernoulli baseline fitted to the training split (the
figure every temporal model must beat). Ratios are moodsong / peer (below 1 is better).

    python bench/jsb_likelihood.py --model wavenet=src/moodsong/data/jsb_wavenet --model rnnrbm=runs/jsb-rnnrbm --frame-rbm 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from moodsong.evaluation.ais import ais_log_partition, free_energy
from moodsong.evaluation.likelihood import evaluate_model, load_benchmark, model_representation
from moodsong.models.checkpoint import load_checkpoint
from moodsong.models.frames import BENCHMARK_REPRESENTATION
from moodsong.models.rnnrbm import RNNRBM, RNNRBMConfig

#: Published JSB Chorales test NLL, nats per time step (lower is better).
PUBLISHED = {
    "RNN-RBM (Boulanger-Lewandowski et al. 2012)": 6.27,
    "RNN-NADE (Boulanger-Lewandowski et al. 2012)": 5.56,
    "DMM (Krishnan et al. 2017)": 6.39,
    "SRNN (Fraccaro et al. 2016, bound)": 4.74,
}


def bernoulli_baseline(train, test):
    p = np.clip(np.concatenate(train).mean(0), 1e-4, 1 - 1e-4)
    x = np.concatenate(test)
    ll = x * np.log(p) + (1 - x) * np.log(1 - p)
    # expected accuracy of independent draws from p
    tp = (x * p).sum()
    fp = ((1 - x) * p).sum()
    fn = (x * (1 - p)).sum()
    return float(-ll.sum(1).mean()), float(tp / (tp + fp + fn))


def frame_rbm(train, test, *, epochs, hidden, k, chains, betas, samples, seed=0):
    """A plain RBM on single frames (no temporal context), trained by CD-k, evaluated with one AIS log Z."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    m = RNNRBM(RNNRBMConfig(num_hidden=hidden))  # its RBM part only: the recurrent weights stay unused
    m.pretrain(torch.from_numpy(np.concatenate(train)), epochs=epochs, lr=0.01, k=k, generator=gen)
    t0 = time.perf_counter()
    res = ais_log_partition(m.W.detach(), m.b_visible.detach(), m.b_hidden.detach(), num_chains=chains, betas=betas,
                            generator=gen)
    x = torch.from_numpy(np.concatenate(test))
    with torch.no_grad():
        nll = float(free_energy(x, m.W, m.b_visible, m.b_hidden).mean() + res.log_z[0])
        prev = torch.cat([torch.zeros_like(x[:1]), x[:-1]])[:, None].expand(-1, samples, -1).contiguous()
        pred, _ = m.gibbs(prev, m.b_visible, m.b_hidden, 25, generator=gen)
    t = x[:, None]
    tp, fp, fn = float((pred * t).sum()), float((pred * (1 - t)).sum()), float(((1 - pred) * t).sum())
    return {"name": f"plain RBM on single frames ({hidden} hidden, CD-{k}, {epochs} epochs)", "nll": nll,
            "nll_stderr": float(res.log_z_stderr[0]), "accuracy": tp / (tp + fp + fn),
            "method": f"AIS for one log Z: {chains} chains x {betas} inverse temperatures",
            "seconds": round(time.perf_counter() - t0, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/polyphonic/jsb_chorales.pkl"))
    ap.add_argument("--model", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--ais-chains", type=int, default=100)
    ap.add_argument("--ais-betas", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frame-rbm", type=int, default=0, metavar="EPOCHS",
                    help="also train a plain RBM on single frames for EPOCHS epochs and evaluate it (AIS)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train = load_benchmark(args.data, "train", BENCHMARK_REPRESENTATION)
    test = load_benchmark(args.data, args.split, BENCHMARK_REPRESENTATION)
    base_nll, base_acc = bernoulli_baseline(train, test)
    rows = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        model, meta, _ = load_checkpoint(path)
        seqs = load_benchmark(args.data, args.split, model_representation(model))
        t0 = time.perf_counter()
        r = evaluate_model(model, seqs, ais_chains=args.ais_chains, ais_betas=args.ais_betas, samples=args.samples)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        r["name"] = name
        rows.append(r)
    if args.frame_rbm:
        rows.append(frame_rbm(train, test, epochs=args.frame_rbm, hidden=150, k=10, chains=max(args.ais_chains, 500),
                              betas=max(args.ais_betas, 1000), samples=args.samples))
    print(f"JSB Chorales {args.split}: {sum(len(s) for s in test)} steps\n")
    print("| model | NLL (nats/step) | +/- | frame acc. | vs Bernoulli | vs RNN-RBM 6.27 | vs RNN-NADE 5.56 | how |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        acc = "-" if r.get("accuracy") is None else f"{100 * r['accuracy']:.1f} %"
        print(f"| moodsong {r['name']} | {r['nll']:.3f} | {r['nll_stderr']:.3f} | {acc} | {r['nll'] / base_nll:.3f} | "
              f"{r['nll'] / 6.27:.3f} | {r['nll'] / 5.56:.3f} | {r['method']} ({r['seconds']} s) |")
    print(f"| peer: per-key Bernoulli (run here) | {base_nll:.3f} | 0 | {100 * base_acc:.1f} % | 1.000 | "
          f"{base_nll / 6.27:.3f} | {base_nll / 5.56:.3f} | exact |")
    for k, v in PUBLISHED.items():
        print(f"| published: {k} | {v:.2f} | | | | | | paper |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "bernoulli": [base_nll, base_acc]}, indent=2))


if __name__ == "__main__":
    main()
