"""RBM training speed on the demo's run: moodsong vs straightforward CD-1 peers, in one run.

The demo's run: the 126 pop MIDI files, 15-step windows (2340 visible units),
50 hidden units, CD-1, lr 0.005, 200 epochs.

Mode (a), demo-faithful: the demo's per-song mini-batches (one song's windows
at a time, batch 100; ~126 updates per epoch). Contenders, interleaved and repeated:

  moodsong         moodsong.training.rbm.train_rbm(order="per-song"), validation off, final checkpoint included:
                   on the CPU this is the fused sparse kernel (moodsong/models/sparse_cd.py), compiled by
                   numba; the compilation (or, once cached on disk, the cache load) happens in the warm-up
                   run and is measured separately, in fresh processes (see "JIT" in the output)
  moodsong torch   the same train_rbm with backend="torch": the tensor loop of RBM.cd_update
  eager-torch      the demo's TensorFlow math translated directly to eager PyTorch: h ~ sigmoid(xW+bh),
                   x_s ~ sigmoid(hW^T+bv), h_s ~ sigmoid(x_s W+bh), W += lr/B (x^T h - x_s^T h_s), ...
                   run at torch's default thread count and again pinned to 1 thread
  numpy            the same math in plain numpy (float32)

Wall-clock and CPU (process) time are both reported: the machine is shared, so
ratios within a round are the figures to read. The fraction of the machine's
float32 matmul peak counts the demo's math as dense FLOPs (5 matmuls of 2*B*V*H
per update), against a 2048^3 matmul measured in the same run.

Mode (b), default: windows shuffled across songs into batches of 100. Reported:
training time (excluding evaluation) for moodsong to reach the pseudo-log-likelihood
that the demo's procedure (per-song, the demo's math, 200 epochs) ends with, both
measured with moodsong's exact RBM.pseudo_log_likelihood on the same held-out
windows (moodsong's own validation split: 10% of the songs, first 128 windows).

Usage:
  python bench/train_rbm.py                          # both modes, 200 epochs, 2 rounds
  python bench/train_rbm.py --mode a --epochs 50 --rounds 3
  python bench/train_rbm.py --mode b
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from moodsong.corpora.corpus import load_corpus
from moodsong.corpora.shards import WindowTable
from moodsong.models.rbm import RBM, RBMConfig
from moodsong.representation.pianoroll import song_windows
from moodsong.training.rbm import TrainConfig, split_pieces, train_rbm

POP = Path(__file__).resolve().parents[2] / "shared" / "data" / "pop_music_midi"
T, H, LR, BATCH = 15, 50, 0.005, 100


# --------------------------------------------------------------------------- peers


def eager_torch(songs: list[torch.Tensor], epochs: int, seed: int = 0):
    """The demo's CD-1, translated line by line to eager PyTorch (sampled hiddens, fresh tensors each step)."""
    return _eager_epochs(songs, epochs, torch.Generator().manual_seed(seed), None)


def numpy_cd(songs: list[np.ndarray], epochs: int, seed: int = 0):
    """The same math in plain numpy, float32."""
    rng = np.random.default_rng(seed)
    V = songs[0].shape[1]
    W = (rng.standard_normal((V, H)) * 0.01).astype(np.float32)
    bv = np.zeros(V, np.float32)
    bh = np.zeros(H, np.float32)

    def sample(p):
        return (rng.random(p.shape, dtype=np.float32) < p).astype(np.float32)

    def sig(a):
        return 1.0 / (1.0 + np.exp(-a))

    for _ in range(epochs):
        for song in songs:
            for i in range(0, song.shape[0], BATCH):
                x = song[i : i + BATCH]
                h = sample(sig(x @ W + bh))
                xs = sample(sig(h @ W.T + bv))
                hs = sample(sig(xs @ W + bh))
                a = np.float32(LR / x.shape[0])
                W += a * (x.T @ h - xs.T @ hs)
                bv += a * (x - xs).sum(0)
                bh += a * (h - hs).sum(0)
    return W, bv, bh


def moodsong_train(corpus, epochs: int, order: str, seed: int = 0, validation: float = 0.0, eval_every: int = 10**9,
                   out: str | None = None, resume: bool = False, lr: float = LR, kernel: bool = True):
    out = out or tempfile.mkdtemp(prefix="moodsong-bench-rbm-")
    # kernel=False: the torch backend, the tensor loop the fused sparse kernel replaced
    tc = TrainConfig(lr=lr, order=order, epochs=epochs, validation_fraction=validation, seed=seed,
                     checkpoint_every=10**9, eval_every=eval_every, device="cpu", backend="auto" if kernel else "torch")
    return train_rbm(corpus, out, RBMConfig(T, H, corpus.config), tc, progress=False, overwrite=not resume,
                     resume=resume)


JIT_PROBE = """
import sys, time
t0 = time.perf_counter()
import numpy as np
from moodsong.models.sparse_cd import SparseCD
t1 = time.perf_counter()
x = np.zeros((4, 2340), np.uint8); x[:, ::30] = 1
SparseCD(x, [0, 4]).epoch(np.zeros((2340, 50), np.float32), np.zeros(2340, np.float32), np.zeros(50, np.float32), 0.005)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def jit_cost() -> tuple[float, float, float]:
    """(import s, first call with an empty numba cache s, first call with the cache filled s), fresh processes each."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [subprocess.run([sys.executable, "-c", JIT_PROBE], env=env, capture_output=True, text=True, check=True)
                for _ in range(2)]
    (imp, cold), (_, warm) = (map(float, r.stdout.split()) for r in runs)
    return imp, cold, warm


# --------------------------------------------------------------------------- helpers


class Timer:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def with_threads(n: int, fn, *a, **k):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn(*a, **k)
    finally:
        torch.set_num_threads(old)


def blas_threads(n: int):
    """Limit numpy's BLAS threads (threadpoolctl), else leave them as they are."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(n)
    except ImportError:
        import contextlib

        return contextlib.nullcontext()


def matmul_peak(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Best float32 GFLOP/s of an n^3 matmul at the given thread count (wall clock)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = 0.0
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.mm(a, b)
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    finally:
        torch.set_num_threads(old)
    return best


# --------------------------------------------------------------------------- mode (a)


def mode_a(corpus, epochs: int, rounds: int, default_thread_epochs: int) -> None:
    songs_np = [w.astype(np.float32) for w in corpus.song_windows(T)]
    songs = [torch.from_numpy(w) for w in songs_np]
    n_win = sum(len(w) for w in songs)
    updates = sum(-(-len(w) // BATCH) for w in songs)
    flops = 5 * 2 * n_win * songs[0].shape[1] * H * epochs  # dense FLOPs of the demo's math
    default_threads = torch.get_num_threads()
    print(f"\nmode (a) demo-faithful: {len(songs)} songs, {n_win} windows, {updates} updates/epoch, {epochs} epochs, "
          f"{flops / 1e9:.0f} GFLOP of dense CD-1 math; torch default threads {default_threads}")
    imp, cold, warm = jit_cost()
    print(f"JIT (fresh processes): import of the kernel module {imp:.2f} s; first call {cold:.2f} s with an empty numba "
          f"cache (compiling), {warm:.2f} s once the cache is on disk")
    moodsong_train(corpus, 1, "per-song")  # warm-up (imports, allocator, the kernel's compilation or cache load)
    moodsong_train(corpus, 1, "per-song", kernel=False)
    eager_torch(songs, 1)
    runs: dict[str, list[Timer]] = {k: [] for k in ("moodsong", "moodsong torch loop", "eager-torch 1 thread",
                                                    "numpy 1 thread")}
    for r in range(rounds):
        with Timer() as t:
            moodsong_train(corpus, epochs, "per-song", seed=r)
        runs["moodsong"].append(t)
        with Timer() as t:
            moodsong_train(corpus, epochs, "per-song", seed=r, kernel=False)
        runs["moodsong torch loop"].append(t)
        with Timer() as t:
            with_threads(1, eager_torch, songs, epochs, r)
        runs["eager-torch 1 thread"].append(t)
        with Timer() as t:
            with blas_threads(1):
                numpy_cd(songs_np, epochs, r)
        runs["numpy 1 thread"].append(t)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1].wall:.1f} s" for k, v in runs.items()), flush=True)
    # torch's default thread count is so slow on this busy machine that it runs fewer epochs, scaled up.
    with Timer() as t:
        eager_torch(songs, default_thread_epochs)
    scale = epochs / default_thread_epochs
    with Timer() as tm:  # a moodsong run of the same length right beside it, for the ratio
        moodsong_train(corpus, default_thread_epochs, "per-song")

    print(f"{'contender':<24} {'wall s (median)':>16} {'CPU s (median)':>15} {'moodsong/peer wall':>19} {'moodsong/peer CPU':>18}")
    for k, v in runs.items():
        wall = [x.wall for x in v]
        cpu = [x.cpu for x in v]
        rw = statistics.median(m.wall / x.wall for m, x in zip(runs["moodsong"], v))
        rc = statistics.median(m.cpu / x.cpu for m, x in zip(runs["moodsong"], v))
        print(f"{k:<24} {statistics.median(wall):>16.2f} {statistics.median(cpu):>15.2f} {rw:>19.3f} {rc:>18.3f}")
    print(f"{'eager-torch default thr.':<24} {t.wall * scale:>16.2f} {t.cpu * scale:>15.2f} {tm.wall / t.wall:>19.3f} "
          f"{tm.cpu / t.cpu:>18.3f}   ({default_thread_epochs} epochs, scaled x{scale:g})")
    m_wall = statistics.median(x.wall for x in runs["moodsong"])
    print(f"moodsong per update: {m_wall / (updates * epochs) * 1e6:.1f} us (wall, final checkpoint included); "
          f"torch loop {statistics.median(x.wall for x in runs['moodsong torch loop']) / (updates * epochs) * 1e6:.1f} us")
    peak_all = matmul_peak(default_threads)
    peak_one = matmul_peak(1)
    rate = flops / m_wall / 1e9
    print(f"float32 matmul peak (2048^3, wall): {peak_all:.1f} GFLOP/s with {default_threads} threads, {peak_one:.1f} with 1")
    print(f"moodsong: {rate:.1f} GFLOP/s dense-equivalent = {rate / peak_all:.1%} of the machine peak "
          f"({rate / peak_one:.1%} of the 1-thread peak); the kernel skips most of those FLOPs (sparse v0, vk)")


# --------------------------------------------------------------------------- mode (b)


def mode_b(corpus, ref_epochs: int, max_epochs: int, chunk: int) -> None:
    train_idx, val_idx = split_pieces(corpus, 0.1, 0)
    val_table = WindowTable(corpus, val_idx, T)
    val = torch.from_numpy(val_table.gather(np.arange(min(len(val_table), 128)))).float()
    songs = [torch.from_numpy(w).float() for w in song_windows([corpus.rolls[i] for i in train_idx], T)]
    print(f"\nmode (b): {len(songs)} training songs, {len(val)} held-out windows from {len(val_idx)} held-out songs")

    def pll(W, bv, bh) -> float:
        m = RBM(RBMConfig(T, H, corpus.config))
        with torch.no_grad():
            m.W.copy_(W), m.b_visible.copy_(bv), m.b_hidden.copy_(bh)
            return float(m.pseudo_log_likelihood(val).mean())

    # The demo's procedure (its math, per-song batches), timed per epoch without evaluation.
    g_time, ref_curve = 0.0, []
    g = torch.Generator().manual_seed(0)
    state = None
    for e in range(ref_epochs):
        with Timer() as t:
            state = with_threads(1, _eager_epochs, songs, 1, g, state)
        g_time += t.wall
        if (e + 1) % 10 == 0 or e + 1 == ref_epochs:
            ref_curve.append((e + 1, round(g_time, 2), round(pll(*state), 2)))
    target = ref_curve[-1][2]
    print(f"demo procedure (eager torch, 1 thread): {ref_epochs} epochs in {g_time:.1f} s training time, "
          f"final held-out PLL {target:.2f} nats/window")
    print("  curve (epoch, s, PLL): " + " ".join(str(c) for c in ref_curve))

    for label, order, lr in [("moodsong default (shuffled, batch 100, lr 0.005)", "shuffled", LR),
                             ("moodsong per-song (the demo's batches, lr 0.005)", "per-song", LR),
                             ("moodsong shuffled, batch 100, lr 0.05 (lr scaled ~ with batch size)", "shuffled", 10 * LR)]:
        time_to_reach(corpus, label, order, lr, target, g_time, max_epochs, chunk)
    # Load drifts on a shared machine: time the demo procedure again afterwards (50 epochs, scaled).
    with Timer() as t:
        with_threads(1, _eager_epochs, songs, 50, torch.Generator().manual_seed(1), None)
    print(f"demo procedure re-timed after the moodsong runs: {t.wall * ref_epochs / 50:.1f} s for {ref_epochs} epochs "
          f"(before: {g_time:.1f} s); divide the times above by either to bracket the ratio")


def time_to_reach(corpus, label, order, lr, target, ref_time, max_epochs, chunk) -> None:
    """Train in resumed chunks, evaluating every 5 epochs, until the held-out PLL reaches ``target``."""
    out = tempfile.mkdtemp(prefix="moodsong-bench-rbm-b-")
    reached, epochs, hist = None, 0, []
    while epochs < max_epochs and reached is None:
        epochs += chunk
        _, hist = moodsong_train(corpus, epochs, order, validation=0.1, eval_every=5, out=out, resume=epochs > chunk, lr=lr)
        spent = np.cumsum([h["seconds"] for h in hist])
        for h, s in zip(hist, spent):
            if h.get("val_pll", -np.inf) >= target:
                reached = (h["epoch"], float(s), h["val_pll"])
                break
    spent = np.cumsum([h["seconds"] for h in hist])
    step = max(1, len(hist) // 10)
    curve = [(h["epoch"], round(float(s), 2), round(h["val_pll"], 2)) for h, s in zip(hist, spent) if h["epoch"] % step == 0 and "val_pll" in h]
    print(f"{label}\n  curve (epoch, s, PLL): " + " ".join(str(c) for c in curve))
    if reached:
        print(f"  reaches the demo's final PLL {target:.2f} at epoch {reached[0]} after {reached[1]:.2f} s of training "
              f"(PLL {reached[2]:.2f}): {reached[1] / ref_time:.3f} of the demo procedure's {ref_time:.1f} s")
    else:
        print(f"  did not reach {target:.2f} within {epochs} epochs ({spent[-1]:.1f} s of training); "
              f"best PLL {max(h.get('val_pll', -np.inf) for h in hist):.2f}")


def _eager_epochs(songs, epochs, g, state):
    """eager_torch, resumable epoch by epoch with one generator (for the reference curve)."""
    V = songs[0].shape[1]
    if state is None:
        W, bv, bh = torch.randn(V, H, generator=g) * 0.01, torch.zeros(V), torch.zeros(H)
    else:
        W, bv, bh = state
    bv, bh = bv.view(1, V), bh.view(1, H)
    for _ in range(epochs):
        for song in songs:
            for i in range(0, song.shape[0], BATCH):
                x = song[i : i + BATCH]
                h = torch.bernoulli(torch.sigmoid(x @ W + bh), generator=g)
                xs = torch.bernoulli(torch.sigmoid(h @ W.t() + bv), generator=g)
                hs = torch.bernoulli(torch.sigmoid(xs @ W + bh), generator=g)
                a = LR / x.shape[0]
                W = W + a * (x.t() @ h - xs.t() @ hs)
                bv = bv + a * (x - xs).sum(0, keepdim=True)
                bh = bh + a * (h - hs).sum(0, keepdim=True)
    return W, bv.view(-1), bh.view(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("a", "b", "both"), default="both")
    ap.add_argument("--epochs", type=int, default=200, help="mode (a) epochs per run (the demo: 200)")
    ap.add_argument("--rounds", type=int, default=2, help="mode (a) interleaved rounds")
    ap.add_argument("--default-thread-epochs", type=int, default=5,
                    help="epochs for the eager peer at torch's default thread count (scaled to --epochs)")
    ap.add_argument("--ref-epochs", type=int, default=200, help="mode (b): epochs of the demo procedure")
    ap.add_argument("--max-epochs", type=int, default=1000, help="mode (b): give up after this many moodsong epochs")
    ap.add_argument("--chunk", type=int, default=50, help="mode (b): epochs per resumed moodsong run")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if not POP.is_dir():
        sys.exit(f"{POP} not found")
    corpus = load_corpus(POP, progress=False)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}")
    if args.mode in ("a", "both"):
        mode_a(corpus, args.epochs, args.rounds, args.default_thread_epochs)
    if args.mode in ("b", "both"):
        mode_b(corpus, args.ref_epochs, args.max_epochs, args.chunk)


if __name__ == "__main__":
    main()
