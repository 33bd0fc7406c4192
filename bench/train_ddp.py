"""Training throughput on CPU: 1 process vs 2 data-parallel processes (gloo), and the share of the matmul peak reached.

Runs, interleaved and repeated (the machine may be shared):

- ``1p x 1t``  one process, one thread (the baseline);
- ``2p x 1t``  two processes under torch.distributed (gloo), one thread each, same global batch;
- ``1p x 2t``  one process with two intra-op threads (the peer: PyTorch's own multi-threaded BLAS);

for the demo RBM (15 x 156 visible, 50 hidden, batch 100, CD-1), a BLAS-sized RBM (512 hidden,
batch 1000) and a WaveNet-NADE (the temporal model trained with autograd). Each figure is the
median over epochs after the first of the real training loops (``train_rbm`` /
``train_sequence_model``), in windows/s or frames/s. The float32 matmul peak (2048^2 ``torch.mm``)
is measured on one thread between the runs, per wall second and per CPU second, and the training
loops' FLOP rate per CPU second of a process (FLOPs counted with ``torch.utils.flop_counter``:
matmuls and convolutions only) is reported as a share of it. On a shared machine the wall-clock
figures mix in other people's load; the per-CPU-second figures say what each process achieves on a
core of its own (so the 2p/1p ratio there is the speed-up to expect with dedicated cores).

    python bench/train_ddp.py                 # ~3-5 minutes on 2 cores
    python bench/train_ddp.py --repeats 1 --quick

The data are random binary windows/pieces (throughput does not depend on the notes).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

CONFIGS = {
    "rbm-demo": dict(kind="rbm", hidden=50, batch=100, windows=6000, epochs=4),
    "rbm-blas": dict(kind="rbm", hidden=512, batch=1000, windows=4000, epochs=3),
    "wavenet": dict(kind="wavenet", channels=32, batch=8, pieces=32, length=128, epochs=3),
}


def _corpus(windows: int):
    from moodsong.corpora.corpus import Corpus
    from moodsong.representation.pianoroll import PianoRollConfig

    cfg = PianoRollConfig()
    rng = np.random.default_rng(0)
    # pieces of 40 windows of 15 steps, ~10% notes on; validation_fraction=0 keeps them all for training
    n = windows // 40
    rolls = [(rng.random((600, cfg.width)) < 0.1).astype(np.uint8) for _ in range(n)]
    return Corpus([f"p{i}" for i in range(n)], rolls, cfg)


def _pieces(n: int, length: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((length, 88)) < 0.08).astype(np.float32) for _ in range(n)]


def _run_config(name: str, out: Path, device: str = "cpu", amp: bool | None = None) -> dict:
    """Items per wall second (median epoch after the first) and per CPU second of this process (whole run)."""
    from moodsong.models.rbm import RBMConfig
    from moodsong.training.rbm import TrainConfig, train_rbm
    from moodsong.training.sequence import TemporalTrainConfig, train_sequence_model

    c = CONFIGS[name]
    if c["kind"] == "rbm":
        tc = TrainConfig(batch_size=c["batch"], epochs=c["epochs"], validation_fraction=0.0, device=device,
                         eval_every=10**6, checkpoint_every=10**6)
        corpus = _corpus(c["windows"])
        cpu = time.process_time()
        _, hist = train_rbm(corpus, out / name, RBMConfig(num_hidden=c["hidden"]), tc, progress=False, overwrite=True)
        items = (corpus.total_steps // 15)
    else:
        tc = TemporalTrainConfig(epochs=c["epochs"], batch_size=c["batch"], max_len=c["length"], patience=10**6, device=device)
        mc = dict(channels=c["channels"], skip_channels=2 * c["channels"], dilations=[1, 2, 4, 8, 16, 32], nade_hidden=100, dropout=0.0)
        pieces = _pieces(c["pieces"], c["length"])
        cpu = time.process_time()
        _, hist = train_sequence_model("wavenet", pieces, [], out / name, mc, tc, progress=False, overwrite=True, amp=amp)
        items = sum(p.shape[0] for p in pieces)
    cpu = time.process_time() - cpu
    secs = [h["seconds"] for h in hist[1:]] or [hist[0]["seconds"]]
    # per CPU second of this process (set-up and first epoch included, so a slight underestimate):
    # what the loop does on a core of its own, whatever else the machine runs
    return {"wall": items / statistics.median(secs), "cpu": items * len(hist) / cpu}


def _worker(rank: int, world: int, port: int, threads: int, names: list[str], result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    from moodsong.training import distributed

    distributed.init_from_env("cpu")
    with tempfile.TemporaryDirectory() as d:
        rates = {n: _run_config(n, Path(d)) for n in names}
    if rank == 0:
        Path(result).write_text(json.dumps(rates))
    distributed.shutdown()


def _launch(world: int, threads: int, names: list[str]) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    mp.spawn(_worker, args=(world, port, threads, names, result), nprocs=world, join=True)
    out = json.loads(Path(result).read_text())
    os.unlink(result)
    return out


def matmul_peak(n: int = 2048, reps: int = 5) -> tuple[float, float]:
    """Best float32 GFLOP/s of an ``n x n`` matmul on one thread: per wall second, and per CPU second."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    wall = cpu = 0.0
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        wall = max(wall, 2 * n**3 / (time.perf_counter() - t) / 1e9)
        cpu = max(cpu, 2 * n**3 / max(time.process_time() - c, 1e-9) / 1e9)
    torch.set_num_threads(old)
    return wall, cpu


def flops_per_item(name: str) -> float:
    """FLOPs of the training loop per window (RBM) or frame (WaveNet), counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from moodsong.models.rbm import RBM, RBMConfig

    c = CONFIGS[name]
    if c["kind"] == "rbm":
        m = RBM(RBMConfig(num_hidden=c["hidden"]))
        v = (torch.rand(c["batch"], m.config.num_visible) < 0.1).float()
        with FlopCounterMode(display=False) as fc:
            m.cd_update(v, 0.005, k=1, generator=torch.Generator().manual_seed(0))
        return fc.get_total_flops() / c["batch"]
    from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE

    m = WaveNetNADE(WaveNetConfig(channels=c["channels"], skip_channels=2 * c["channels"], dilations=[1, 2, 4, 8, 16, 32],
                                  nade_hidden=100, dropout=0.0))
    v = (torch.rand(c["batch"], c["length"], 88) < 0.08).float()
    mask = torch.ones(c["batch"], c["length"], dtype=torch.bool)
    with FlopCounterMode(display=False) as fc:
        m.loss(v, mask).backward()
    return fc.get_total_flops() / (c["batch"] * c["length"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="Only the demo RBM.")
    args = ap.parse_args()
    names = ["rbm-demo"] if args.quick else list(CONFIGS)
    settings = [("1p x 1t", 1, 1), ("2p x 1t", 2, 1), ("1p x 2t", 1, 2)]
    rates = {s[0]: {n: [] for n in names} for s in settings}
    peaks = []
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch {torch.__version__}", flush=True)
    for r in range(args.repeats):
        order = settings[r % 3:] + settings[: r % 3]  # rotate so no setting always runs first
        for label, world, threads in order:
            peaks.append(matmul_peak())
            res = _launch(world, threads, names)
            for n in names:
                rates[label][n].append(res[n])
            print(f"  repeat {r + 1}: {label}: " + ", ".join(f"{n} {res[n]['wall']:.0f}/s" for n in names), flush=True)
    peak_wall = statistics.median(p[0] for p in peaks)
    peak_cpu = statistics.median(p[1] for p in peaks)
    print(f"\nfloat32 matmul peak, 1 thread (2048^2, median of {len(peaks)} best-of-5): {peak_wall:.1f} GFLOP/s per wall second, "
          f"{peak_cpu:.1f} GFLOP/s per CPU second")
    print(f"load average at end: {os.getloadavg()[0]:.1f}\n")
    unit = {"rbm": "windows/s", "wavenet": "frames/s"}
    med = {n: {s: statistics.median(x["wall"] for x in rates[s][n]) for s in rates} for n in names}
    cpu = {n: {s: statistics.median(x["cpu"] for x in rates[s][n]) for s in rates} for n in names}
    print("Throughput per wall second (median over repeats of the median epoch), ratios to 1p x 1t:")
    print(f"{'model':<10} {'unit':<10} {'1p x 1t':>9} {'2p x 1t':>9} {'1p x 2t':>9} {'2p/1p':>6} {'2t/1t':>6}")
    for n in names:
        m = med[n]
        print(f"{n:<10} {unit[CONFIGS[n]['kind']]:<10} {m['1p x 1t']:>9.0f} {m['2p x 1t']:>9.0f} {m['1p x 2t']:>9.0f} "
              f"{m['2p x 1t'] / m['1p x 1t']:>6.2f} {m['1p x 2t'] / m['1p x 1t']:>6.2f}")
    print("\nPer CPU second of one process (what each process does on a core of its own), and the share of the matmul peak:")
    print(f"{'model':<10} {'1p items/cpu-s':>14} {'2p items/cpu-s':>14} {'2p/1p':>6} {'MFLOP/item':>10} {'1p GFLOP/cpu-s':>14} "
          f"{'of peak':>8} {'2p of peak':>10}")
    for n in names:
        c = cpu[n]
        f = flops_per_item(n)
        # each of the 2 processes handles half the items: per-process FLOP rate = items/2 per its CPU second
        g1, g2 = c["1p x 1t"] * f / 1e9, c["2p x 1t"] / 2 * f / 1e9
        print(f"{n:<10} {c['1p x 1t']:>14.0f} {c['2p x 1t']:>14.0f} {c['2p x 1t'] / c['1p x 1t']:>6.2f} {f / 1e6:>10.2f} "
              f"{g1:>14.1f} {g1 / peak_cpu:>8.0%} {g2 / peak_cpu:>10.0%}")


if __name__ == "__main__":
    sys.exit(main())
