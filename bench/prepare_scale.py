"""Corpus preparation at scale: files/s and peak memory vs corpus size, sharded vs one in-memory cache entry.

Builds a corpus of thousands of MIDI files in a temporary folder: seed pieces (EMOPIA and the pop
MIDI set from ../shared/data when present, else Bach chorales from music21's corpus converted to
MIDI) plus transposed copies of them (symusic ``shift_pitch``, -8..+8 semitones). For each size it
prepares, in a fresh process each, interleaved:

- ``shards``  ``moodsong.corpora.shards.prepare_shards`` (streaming, bounded in-flight work, shards of 500 pieces);
- ``memory``  ``moodsong.corpora.corpus.load_corpus`` (the peer: every piece in memory, then one cache entry);

both with the same number of worker processes, and prints wall time, files/s, the main process's
peak RSS and the largest worker's peak RSS. Cost should grow linearly with files for both; the
sharded main process's memory should stay flat while the in-memory one grows with the corpus.

    python bench/prepare_scale.py                       # sizes 1000 2000 4000 8000 16000
    python bench/prepare_scale.py --sizes 500 1000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
method, src, out, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
if method == "shards":
    from moodsong.corpora.shards import prepare_shards
    c = prepare_shards(src, out=out, shard_pieces=500, workers=workers, progress=False)
else:
    from moodsong.corpora.corpus import load_corpus
    c = load_corpus(src, cache_dir=out, workers=workers, progress=False)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "pieces": len(c), "steps": c.total_steps,
                  "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def seed_files(tmp: Path) -> list[Path]:
    files = []
    for sub in ("emopia", "pop_music_midi"):
        if (SHARED / sub).is_dir():
            files += sorted(p for p in (SHARED / sub).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if files:
        return files
    import music21

    out = tmp / "bach"
    out.mkdir()
    for i, path in enumerate(music21.corpus.getComposer("bach")[:150]):
        try:
            music21.converter.parse(path).write("midi", fp=str(out / f"bach{i:03d}.mid"))
        except Exception:
            continue
    return sorted(out.glob("*.mid"))


def build_corpus(tmp: Path, n: int) -> Path:
    """``n`` MIDI files: the seeds, then transposed copies, written by symusic."""
    import symusic

    seeds = seed_files(tmp)
    pool = tmp / "pool"
    pool.mkdir()
    made = 0
    for shift in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, 7, 8, -6, -7, -8):
        for s in seeds:
            if made == n:
                return pool
            try:
                score = symusic.Score(str(s))
            except Exception:
                continue
            sub = pool / f"t{shift:+d}"
            sub.mkdir(exist_ok=True)
            score.shift_pitch(shift).dump_midi(str(sub / f"{made:06d}.mid"))
            made += 1
    return pool


def subset(pool: Path, tmp: Path, n: int) -> Path:
    """A folder of symlinks to the first ``n`` files of the pool."""
    folder = tmp / f"corpus-{n}"
    folder.mkdir()
    for i, f in enumerate(sorted(pool.rglob("*.mid"))[:n]):
        (folder / f"{i:06d}.mid").symlink_to(f)
    return folder


def run(method: str, src: Path, out: Path, workers: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, method, str(src), str(out), str(workers)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000])
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        pool = build_corpus(tmp, max(args.sizes))
        n_pool = len(list(pool.rglob("*.mid")))
        mb = sum(f.stat().st_size for f in pool.rglob("*.mid")) / 2**20
        print(f"built {n_pool} MIDI files ({mb:.0f} MB) in {time.perf_counter() - t:.0f} s; {args.workers} workers; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        rows = []
        for i, n in enumerate(s for s in args.sizes if s <= n_pool):
            src = subset(pool, tmp, n)
            for method in (("shards", "memory") if i % 2 == 0 else ("memory", "shards")):
                r = run(method, src, tmp / f"out-{method}-{n}", args.workers)
                r.update(method=method, files=n)
                rows.append(r)
                print(f"  {method:<6} {n:>6} files: {r['seconds']:7.1f} s  {n / r['seconds']:6.0f} files/s  "
                      f"main {r['rss_main_mb']:6.0f} MB  worker {r['rss_worker_mb']:5.0f} MB  ({r['pieces']} pieces, {r['steps']} steps)",
                      flush=True)
        print(f"\n{'files':>6} {'shards s':>9} {'memory s':>9} {'time ratio':>10} {'shards MB':>10} {'memory MB':>10} "
              f"{'shards ms/file':>14} {'memory ms/file':>14}")
        for n in sorted({r["files"] for r in rows}):
            s = next(r for r in rows if r["files"] == n and r["method"] == "shards")
            m = next(r for r in rows if r["files"] == n and r["method"] == "memory")
            print(f"{n:>6} {s['seconds']:>9.1f} {m['seconds']:>9.1f} {s['seconds'] / m['seconds']:>10.2f} "
                  f"{s['rss_main_mb']:>10.0f} {m['rss_main_mb']:>10.0f} {1000 * s['seconds'] / n:>14.2f} {1000 * m['seconds'] / n:>14.2f}")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
