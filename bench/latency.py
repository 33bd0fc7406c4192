"""Whole-process latency of moodsong's commands, next to the previous release (issue 13).

Each command runs as a fresh process (``python -m moodsong ...``), several times,
interleaved with the same command from the previous release: a git worktree of
``--previous`` (default ed94e64, the commit before issue 13's changes) imported
through ``PYTHONPATH``, with the same interpreter and packages. Interleaving
(now, previous, now, previous, ...) spreads the noise of a shared machine over
both sides. Reported: the median wall time and peak memory (RSS of the child
process) of each side, and the ratio now / previous.

Usage::

    python bench/latency.py                       # every case, 5 runs each
    python bench/latency.py --runs 3 --only help,emotion,plot
    python bench/latency.py --list
    python bench/latency.py --stages 5            # where a cold compose's time goes (this tree only)

Bytecode: an installed package runs from cached bytecode (``__pycache__``), so by
default every child runs with ``PYTHONPYCACHEPREFIX`` set to one folder under the
temporary folder and without ``PYTHONDONTWRITEBYTECODE``; the dropped warm-up run
of each side compiles it. ``--no-bytecode-cache`` keeps the environment as it is
(where ``PYTHONDONTWRITEBYTECODE=1`` is set, every run compiles moodsong's sources).

``compose-warm`` composes inside one process after a first, untimed song (the
model and the text encoder already loaded) and reports the second song's time.
``compose-parts`` is everything a cold compose does except generating: the
prompt's emotion, the estimator's judgement of one 8-bar piece, and writing it
(MIDI, WAV, PNG, chords and key), i.e. what the generator must leave room for.
``compose-no-leadsheet`` is the cold compose without the MusicXML lead sheet (this
tree only: the previous release has no lead sheet). ``train-rbm`` is the demo's RBM
run as a user types it (``moodsong train <126 pop files> --epochs 200 --order
per-song --val-fraction 0 --force``; ``--pop`` names the folder). The web
(``bench/web_load.py``) and the training peers (``bench/train_rbm.py``) have their
own scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "I want a song that expresses hope and wonder"

WARM_COMPOSE = f"""
import sys, time
from moodsong.pipeline import ComposeRequest, compose
out = sys.argv[1]
compose(ComposeRequest(prompt={PROMPT!r}, bars=8, candidates=6, seed=0, out_dir=out))
t = time.perf_counter()
compose(ComposeRequest(prompt={PROMPT!r}, bars=8, candidates=6, seed=1, out_dir=out))
print("SECONDS", time.perf_counter() - t)
"""


# Everything compose does around the generator, in one cold process: the prompt's emotion, the estimator's
# judgement of a piece, and writing it (MIDI, WAV, PNG, chords and key). Its time is the budget left by the
# 3 s compose target to the generator.
COMPOSE_PARTS = f"""
import sys
from moodsong.representation.pianoroll import read_score
from moodsong.emotion.music import MusicEmotionEstimator
from moodsong.emotion.text import analyze_text
from moodsong.render.outputs import write_piece
analyze_text({PROMPT!r})
score = read_score(sys.argv[1])
MusicEmotionEstimator.load_default().predict_score(score)
write_piece(score, sys.argv[2], "song", audio="wav", picture=True)
"""


# One cold compose with the time of each stage (this process wraps the functions compose calls).
COMPOSE_STAGES = f"""
import functools, json, sys, time
t_start = time.perf_counter()
times = {{}}
def timed(owner, name, label):
    f = getattr(owner, name)
    @functools.wraps(f)
    def g(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            times[label] = times.get(label, 0.0) + time.perf_counter() - t
    setattr(owner, name, g)
t = time.perf_counter()
import moodsong.pipeline as C
times["import moodsong.pipeline"] = time.perf_counter() - t
import moodsong.render.audio as A, moodsong.render.pictures as P
import moodsong.render.leadsheet as L, moodsong.song.model as SM
from moodsong.emotion.music import MusicEmotionEstimator as E
from moodsong.cli import main
for owner, name, label in [(C, "resolve_emotion", "prompt emotion (text)"), (SM.SongModel, "load", "SongModel.load"),
                           (SM.SongModel, "generate", "SongModel.generate"), (E, "load_default", "estimator load"),
                           (E, "predict_score", "estimator scoring"), (C, "_plan_followed", "plan followed"),
                           (A, "render", "audio render"), (A, "write_audio", "audio write"),
                           (P, "save_pianoroll", "picture"), (L, "write_leadsheet", "lead sheet (MusicXML)"),
                           (C, "compose", "compose() in all")]:
    timed(owner, name, label)
sys.argv = ["moodsong", "compose", {PROMPT!r}, "--out", sys.argv[1]]
try:
    main()
except SystemExit:
    pass
times["process after start-up"] = time.perf_counter() - t_start
print("STAGES", json.dumps(times))
"""

#: Cases run on this tree only (the previous release lacks what they time).
NOW_ONLY = ("compose-no-leadsheet",)
POP = ROOT.parent / "shared" / "data" / "pop_music_midi"


def cases(midi: Path, pop: Path = POP) -> dict[str, list[str]]:
    """Name -> arguments after ``python``; ``{out}`` is a fresh temporary folder per run."""
    m = [sys.executable, "-m", "moodsong"]
    return {
        "help": m + ["--help"],
        "compose-help": m + ["compose", "--help"],
        "train-help": m + ["train", "--help"],
        "generate-help": m + ["generate", "--help"],
        "emotion-zh": m + ["emotion", "一首悲伤缓慢的歌", "--json"],
        "emotion-en": m + ["emotion", PROMPT, "--json"],
        "chords": m + ["chords", str(midi)],
        "plot": m + ["plot", str(midi), "{out}/roll.png"],
        "compose-parts": [sys.executable, "-c", COMPOSE_PARTS, str(midi), "{out}"],
        "compose": m + ["compose", PROMPT, "--out", "{out}"],
        "compose-no-leadsheet": m + ["compose", PROMPT, "--out", "{out}", "--no-leadsheet"],
        "compose-warm": [sys.executable, "-c", WARM_COMPOSE, "{out}"],
        "train-rbm": m + ["train", str(pop), "--epochs", "200", "--order", "per-song", "--val-fraction", "0", "--force",
                          "--out", "{out}/run"],
    }


def worktree(rev: str) -> Path:
    """A detached git worktree of ``rev`` under the temporary folder (made once)."""
    path = Path(tempfile.gettempdir()) / f"moodsong-{rev}"
    if not (path / "src" / "moodsong").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)
    return path


#: The environment's bytecode settings for the children (see the module docstring); set in main().
BYTECODE: dict[str, str | None] = {}


def child_env(src: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(src))
    for k, v in BYTECODE.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_once(argv: list[str], src: Path) -> tuple[float, str]:
    """Run one whole process in a fresh folder; ``(wall seconds, stdout)``. Raises on a non-zero exit."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [a.replace("{out}", tmp) for a in argv]
        env = child_env(src)
        t = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, env=env, cwd=tmp)
        wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return wall, proc.stdout.decode(errors="replace")


def measure(name: str, argv: list[str], sides: dict[str, Path], runs: int) -> dict:
    """Interleaved runs of one case on every side; the first run of each side warms caches and is dropped."""
    times: dict[str, list[float]] = {s: [] for s in sides}
    for i in range(runs + 1):
        for side, src in sides.items():
            wall, out = run_once(argv, src)
            if name == "compose-warm":
                wall = float(out.rsplit("SECONDS", 1)[1].split()[0])
            if i > 0:
                times[side].append(wall)
            print(f"  {name:14s} {side:8s} run {i}: {wall:7.3f} s{'  (warm-up)' if i == 0 else ''}", flush=True)
    med = {s: statistics.median(v) for s, v in times.items()}
    return {"name": name, "command": " ".join(argv), "runs": runs, "seconds": times, "median_s": med,
            "ratio_now_over_previous": med["now"] / med["previous"] if med.get("previous") else None}


def peak_rss(argv: list[str], src: Path) -> float:
    """Peak RSS (MB) of one run, measured alone (RUSAGE_CHILDREN keeps the maximum over all children)."""
    code = ("import resource, subprocess, sys, os\n"
            "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    with tempfile.TemporaryDirectory() as tmp:
        argv = [a.replace("{out}", tmp) for a in argv]
        env = child_env(src)
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=tmp)
    return float(out.stdout.strip() or 0)


def stages(runs: int) -> None:
    """Cold composes of this tree with the time of each stage; medians over ``runs`` after one warm-up."""
    import statistics as st

    rows: list[dict] = []
    for i in range(runs + 1):
        wall, out = run_once([sys.executable, "-c", COMPOSE_STAGES, "{out}"], ROOT / "src")
        if i > 0:
            rows.append({**json.loads(out.rsplit("STAGES", 1)[1]), "whole process": wall})
        print(f"  compose-stages run {i}: {wall:.2f} s{'  (warm-up)' if i == 0 else ''}", flush=True)
    print(f"\n| stage of a cold compose ({runs} runs) | median s | share of the whole process |")
    print("|---|---:|---:|")
    whole = st.median(r["whole process"] for r in rows)
    for k in rows[0]:
        med = st.median(r.get(k, 0.0) for r in rows)
        print(f"| {k} | {med:.3f} | {med / whole:.0%} |")
    gen = st.median(r.get("SongModel.load", 0) + r.get("SongModel.generate", 0) + r.get("estimator load", 0)
                    + r.get("estimator scoring", 0) for r in rows)
    print(f"\nsong generator (load + generate + estimator load and scoring): {gen:.3f} s, {gen / whole:.0%} "
          f"of the whole process; load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per side (after one warm-up run each)")
    ap.add_argument("--previous", default="ed94e64", help="git revision of the previous release")
    ap.add_argument("--only", default=None, help="comma-separated case names (see --list)")
    ap.add_argument("--midi", default=None, help="MIDI file for chords/plot (default: a generated 8-bar piece)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--pop", default=str(POP), help="the demo's pop MIDI folder (train-rbm)")
    ap.add_argument("--stages", type=int, default=0, metavar="RUNS",
                    help="time the stages of a cold compose of this tree instead (RUNS runs)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="keep the environment's bytecode settings (see the module docstring)")
    args = ap.parse_args()
    if not args.no_bytecode_cache:
        BYTECODE.update(PYTHONDONTWRITEBYTECODE=None,
                        PYTHONPYCACHEPREFIX=str(Path(tempfile.gettempdir()) / "moodsong-latency-pycache"))
    if args.stages:
        stages(args.stages)
        return

    midi = Path(args.midi) if args.midi else Path(tempfile.gettempdir()) / "moodsong-latency.mid"
    if not args.midi and not midi.exists():
        subprocess.run([sys.executable, "-m", "moodsong", "generate", "--bars", "8", "--seed", "1", "--audio", "none",
                        "--no-picture", "--out", str(midi.parent), "--name", midi.stem], check=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    all_cases = cases(midi, Path(args.pop))
    if args.list:
        for k, v in all_cases.items():
            print(f"{k:14s} {' '.join(v)[:120]}")
        return
    names = args.only.split(",") if args.only else list(all_cases)
    sides = {"now": ROOT / "src", "previous": worktree(args.previous) / "src"}
    print(f"now: {ROOT} ({subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}"
          f" + working tree); previous: {args.previous}; {args.runs} runs each, interleaved; "
          f"bytecode {'as the environment has it' if args.no_bytecode_cache else 'cached'}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for name in names:
        try:
            on = {"now": sides["now"]} if name in NOW_ONLY else sides
            r = measure(name, all_cases[name], on, args.runs)
        except RuntimeError as exc:  # one broken case (e.g. a model not shipped yet) must not end the run
            print(f"  {name}: {exc}", flush=True)
            results.append({"name": name, "command": " ".join(all_cases[name]), "error": str(exc)[:300]})
            continue
        if name != "compose-warm":
            r["peak_rss_mb"] = {s: peak_rss(all_cases[name], src) for s, src in on.items()}
        results.append(r)
    print("\n| case | now: median s | previous: median s | now / previous | peak RSS now / previous (MB) |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        if "error" in r:
            print(f"| {r['name']} | failed | | | |")
            continue
        rss = r.get("peak_rss_mb") or {}
        prev = r["median_s"].get("previous")
        print(f"| {r['name']} | {r['median_s']['now']:.2f} | " + (f"{prev:.2f}" if prev else "-") + " | "
              + (f"{r['ratio_now_over_previous']:.2f}" if prev else "-") + " | "
              + (f"{rss['now']:.0f} / {rss['previous']:.0f}" if "previous" in rss else
                 f"{rss['now']:.0f}" if rss else "-") + " |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
