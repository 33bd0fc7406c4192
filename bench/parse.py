"""MIDI -> note-state matrix: files per second of moodsong and two peers, on the same files, in one run.

Paths measured (each reads the MIDI file from disk and returns a ``(T, 156)``
``[held | struck]`` matrix for pitches 24..101 at sixteenth-note steps):

  moodsong     moodsong.representation.pianoroll.midi_to_roll (symusic C++ parser + numpy)
  pretty_midi  pretty_midi.PrettyMIDI(f), get_piano_roll sampled at sixteenth-note
               times (tick_to_time), strikes from the instruments' note onsets
  demo         the classic RBM demo's algorithm, re-implemented here on mido: walk all
               tracks tick by tick, emit a state row at every sixteenth-note boundary,
               note-on sets [held, struck], note-off clears, and stop at the first time
               signature whose numerator is not 2 or 4

Runs are interleaved (moodsong, pretty_midi, demo, moodsong, ...) so a change in
machine load hits every path alike; the ratios are per round, then the median.

Corpora: ../shared/data/pop_music_midi (126 files) and the music21 Bach chorales,
written once to MIDI by music21 in a temporary folder (reused by later runs) so every path
reads MIDI, then re-timed from music21's 10080 to 480 ticks per quarter.

Usage:
  python bench/parse.py                      # both corpora, 5 rounds
  python bench/parse.py --rounds 9 --corpus pop
  python bench/parse.py --profile            # cProfile of moodsong's path on the pop corpus
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mido
import numpy as np
import pretty_midi

from moodsong.representation.pianoroll import PianoRollConfig, midi_to_roll

LOW, HIGH = 24, 102  # the demo's pitch range, high exclusive
SPAN = HIGH - LOW
POP = Path(__file__).resolve().parents[2] / "shared" / "data" / "pop_music_midi"
BACH_DIR = Path(tempfile.gettempdir()) / "moodsong-bench-bach-midi"
BACH_TPQ = 480  # music21 writes 10080 ticks per quarter; a tick-by-tick loop would pay 21x for that alone


# --------------------------------------------------------------------------- peers


def demo_roll(path: str) -> np.ndarray:
    """The demo's tick-by-tick algorithm on mido (a re-implementation from its description)."""
    mid = mido.MidiFile(path)
    step = mid.ticks_per_beat // 4  # ticks per sixteenth note
    half = mid.ticks_per_beat // 8  # the demo sampled in the middle of each sixteenth
    tracks = [list(t) for t in mid.tracks]
    pos = [0] * len(tracks)
    wait = [t[0].time if t else None for t in tracks]  # ticks until each track's next event
    held = [0] * SPAN
    hit = [0] * SPAN
    rows = [(held, hit)]
    tick = 0
    while True:
        if step and tick % step == half:
            held, hit = list(held), [0] * SPAN  # new step: notes keep sounding, strikes reset
            rows.append((held, hit))
        for i, track in enumerate(tracks):
            while wait[i] == 0:
                msg = track[pos[i]]
                if msg.type == "note_on" or msg.type == "note_off":
                    if LOW <= msg.note < HIGH:
                        on = msg.type == "note_on" and msg.velocity > 0
                        held[msg.note - LOW] = hit[msg.note - LOW] = int(on)
                elif msg.type == "time_signature" and msg.numerator not in (2, 4):
                    return _stack(rows)  # the demo gave up on other meters
                pos[i] += 1
                wait[i] = track[pos[i]].time if pos[i] < len(track) else None
            if wait[i] is not None:
                wait[i] -= 1
        if all(w is None for w in wait):
            break
        tick += 1
    return _stack(rows)


def _stack(rows) -> np.ndarray:
    out = np.zeros((len(rows), 2 * SPAN), np.uint8)
    for t, (h, s) in enumerate(rows):
        out[t, :SPAN] = h
        out[t, SPAN:] = s
    return out


def pretty_midi_roll(path: str) -> np.ndarray:
    """pretty_midi's piano roll sampled at sixteenth notes of the opening tempo, plus strikes from note onsets.

    This is pretty_midi's fastest route (``get_piano_roll(fs=...)``); it is exact only for
    files that keep one tempo, which favours the peer. Sampling at exact sixteenth-note
    times (``get_piano_roll(times=...)``) averages over each interval and is ~2x slower.
    """
    pm = pretty_midi.PrettyMIDI(path)
    _, qpm = pm.get_tempo_changes()
    fs = 4 * (qpm[0] if len(qpm) else 120.0) / 60  # sixteenth notes per second
    held = pm.get_piano_roll(fs=fs)[LOW:HIGH].T > 0
    roll = np.zeros((len(held), 2 * SPAN), np.uint8)
    roll[:, :SPAN] = held
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            t = int(round(n.start * fs))
            if LOW <= n.pitch < HIGH and t < len(roll):
                roll[t, SPAN + n.pitch - LOW] = roll[t, n.pitch - LOW] = 1
    return roll


def moodsong_roll(path: str, _cfg=PianoRollConfig()) -> np.ndarray:
    return midi_to_roll(path, _cfg)


PATHS = {"moodsong": moodsong_roll, "pretty_midi": pretty_midi_roll, "demo": demo_roll}


# --------------------------------------------------------------------------- corpora


def _bach_to_midi(args: tuple[str, str]) -> str | None:
    src, dst = args
    try:
        import music21

        music21.converter.parse(src).write("midi", fp=dst)
        return dst
    except Exception:
        return None


def bach_midi(limit: int | None) -> list[str]:
    """The music21 Bach chorales as MIDI files in a temp folder (converted once, then reused)."""
    from moodsong.corpora.corpus import list_inputs

    _, files, _ = list_inputs("bach")
    BACH_DIR.mkdir(exist_ok=True)
    todo = [(str(f), str(BACH_DIR / (f.stem + ".mid"))) for f in files if not (BACH_DIR / (f.stem + ".mid")).exists()]
    if todo:
        print(f"converting {len(todo)} Bach chorales to MIDI in {BACH_DIR} (once) ...", file=sys.stderr)
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(_bach_to_midi, todo, chunksize=8))
    # Re-time to the common 480 ticks per quarter (same notes: chorale rhythms fall on that grid).
    dst = BACH_DIR.with_name(BACH_DIR.name + f"-{BACH_TPQ}")
    dst.mkdir(exist_ok=True)
    for src in sorted(BACH_DIR.glob("*.mid")):
        if not (dst / src.name).exists():
            import symusic

            symusic.Score(str(src)).resample(BACH_TPQ, min_dur=1).dump_midi(str(dst / src.name))
    out = sorted(str(p) for p in dst.glob("*.mid"))
    return out[:limit] if limit else out


# --------------------------------------------------------------------------- timing


def time_pass(fn, files: list[str]) -> float:
    t0 = time.perf_counter()
    for f in files:
        try:
            fn(f)
        except Exception:
            pass  # a file a peer cannot read still costs it the time spent trying
    return time.perf_counter() - t0


def bench(name: str, files: list[str], rounds: int) -> dict:
    # Warm-up: imports, caches, page cache.
    for fn in PATHS.values():
        time_pass(fn, files[:5])
    secs: dict[str, list[float]] = {k: [] for k in PATHS}
    for _ in range(rounds):
        for k, fn in PATHS.items():
            secs[k].append(time_pass(fn, files))
    n = len(files)
    print(f"\n{name}: {n} files, {rounds} interleaved rounds")
    print(f"{'path':<12} {'files/s (median)':>17} {'files/s (best)':>15}")
    for k, s in secs.items():
        print(f"{k:<12} {n / statistics.median(s):>17.0f} {n / min(s):>15.0f}")
    res = {}
    for peer in ("pretty_midi", "demo"):
        ratios = [p / m for p, m in zip(secs[peer], secs["moodsong"])]
        res[peer] = statistics.median(ratios)
        print(f"moodsong vs {peer}: {res[peer]:.0f}x (median of per-round ratios; range {min(ratios):.0f}-{max(ratios):.0f}x)")
    return res


def agreement(files: list[str]) -> None:
    """How closely the peers' matrices match moodsong's (same length cut, held bits only)."""
    for peer in ("pretty_midi", "demo"):
        same, total = 0, 0
        for f in files:
            try:
                a, b = moodsong_roll(f), PATHS[peer](f)
            except Exception:
                continue
            T = min(len(a), len(b))
            if T == 0:
                continue
            same += int((a[:T, :SPAN] == b[:T, :SPAN]).sum())
            total += T * SPAN
        print(f"held-bit agreement moodsong vs {peer}: {same / max(total, 1):.4f} (over the common length)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", choices=("pop", "bach", "both"), default="both")
    ap.add_argument("--bach-limit", type=int, default=None, help="use only the first N chorales")
    ap.add_argument("--profile", action="store_true", help="profile moodsong's path on the pop corpus and exit")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # pretty_midi warns about type-0 files and odd tempos
    pop = sorted(str(p) for p in POP.glob("*.mid*")) if POP.is_dir() else []
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx("for _ in range(20): time_pass(moodsong_roll, pop)", globals(), locals(), "/tmp/parse.prof")
        pstats.Stats("/tmp/parse.prof").sort_stats("cumulative").print_stats(25)
        return
    if args.corpus in ("pop", "both"):
        if not pop:
            print(f"{POP} not found; skipping the pop corpus", file=sys.stderr)
        else:
            bench("pop_music_midi", pop, args.rounds)
            agreement(pop)
    if args.corpus in ("bach", "both"):
        bach = bach_midi(args.bach_limit)
        bench("music21 Bach chorales (as MIDI)", bach, args.rounds)
        agreement(bach[:100])


if __name__ == "__main__":
    main()
