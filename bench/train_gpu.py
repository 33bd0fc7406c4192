"""GPU vs CPU training throughput in one run (for a session lent a CUDA machine).

Runs the same training loops as ``bench/train_ddp.py`` (demo RBM, BLAS-sized RBM, WaveNet-NADE in
float32 and in bf16 autocast) on ``cuda`` and on the CPU (all cores), and prints items/s and the
GPU/CPU ratio. Exits with a message where no CUDA device is present.

    python bench/train_gpu.py
    python bench/train_gpu.py --scale 8      # 8x larger batches/corpora to fill a big GPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_ddp  # noqa: E402  (same configs and loops)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=4, help="Multiply batch sizes and corpus sizes by this.")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to compare (run this on a GPU machine)")
        return 0
    for c in train_ddp.CONFIGS.values():
        c["batch"] *= args.scale
        for k in ("windows", "pieces"):
            if k in c:
                c[k] *= args.scale
    print(f"{torch.cuda.get_device_name()}; CPU threads {torch.get_num_threads()}; scale {args.scale}")
    runs = [(n, None) for n in train_ddp.CONFIGS] + [("wavenet", True)]
    with tempfile.TemporaryDirectory() as d:
        for name, amp in runs:
            label = name + (" bf16" if amp else "")
            gpu = train_ddp._run_config(name, Path(d), "cuda", amp=amp if amp else (False if name == "wavenet" else None))
            cpu = train_ddp._run_config(name, Path(d), "cpu", amp=False if name == "wavenet" else None)
            print(f"{label:<14} cuda {gpu['wall']:>10.0f}/s   cpu {cpu['wall']:>8.0f}/s   ratio {gpu['wall'] / cpu['wall']:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
