"""WaveNet-NADE training steps with and without ``moodsong.training.allocator.reuse_freed_memory``, in one run.

The setting is process-wide, so each contender runs in its own child process; rounds alternate.
The model is the shipped ``pop_wavenet`` (64 channels, NADE 100 hidden, 156-bit note-state frames),
batches of 8 crops of 256 sixteenth-note steps, one torch thread, Adam.

    python bench/allocator.py                 # 3 rounds of 8 updates
    python bench/allocator.py --rounds 5 --updates 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def child(reuse: bool, updates: int) -> dict:
    import resource

    import numpy as np
    import torch

    from moodsong.evaluation.likelihood import pad_batch
    from moodsong.models.generate import load_model
    from moodsong.training.allocator import reuse_freed_memory

    if reuse:
        reuse_freed_memory()
    torch.set_num_threads(1)
    model = load_model("pop-wavenet")
    model = model[0] if isinstance(model, tuple) else model
    rng = np.random.default_rng(0)
    v, mask = pad_batch([(rng.random((256, 156)) < 0.03).astype(np.float32) for _ in range(8)])
    model.train()
    opt = torch.optim.Adam(model.parameters())

    def step():
        loss = model.loss(v, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(updates):
        step()
    wall = (time.perf_counter() - t0) / updates
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": wall, "cpu": (time.process_time() - c0) / updates, "faults": (ru.ru_minflt - f0) / updates}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--updates", type=int, default=8)
    ap.add_argument("--child", choices=["reuse", "default"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child == "reuse", args.updates)))
        return 0
    runs: dict[str, list[dict]] = {"reuse": [], "default": []}
    for r in range(args.rounds):
        for name in runs:
            out = subprocess.run([sys.executable, __file__, "--child", name, "--updates", str(args.updates)],
                                 capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['wall'] * 1e3:.0f} ms/update" for k, v in runs.items()), flush=True)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "cpu", "faults")} for k, v in runs.items()}
    ratios = [a["wall"] / b["wall"] for a, b in zip(runs["reuse"], runs["default"])]
    for k, m in med.items():
        print(f"{k:<8} {m['wall'] * 1e3:8.0f} ms/update wall  {m['cpu'] * 1e3:8.0f} ms CPU  {m['faults']:10.0f} page faults/update")
    print(f"reuse / default wall time per update: {statistics.median(ratios):.2f} (median of per-round ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
