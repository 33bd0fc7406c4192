"""Render speed (real-time factor) and tuning of each audio renderer, with peers, on one piano piece.

Real-time factor = seconds of audio / seconds of compute (best of --repeats), both by the
wall clock and by this process's CPU time (the fairer figure on a shared, loaded machine;
FluidSynth's CPU time counts both of its voice threads).
Tuning: the spectral peak of a lone A4 (expect 440 Hz) and whether a C major
triad shows C4, E4 and G4 peaks, all with the default SoundFont (TimGM6mb.sf2).

Renderers measured:
  moodsong midirenderer   moodsong.render.audio.render(renderer="midirenderer")  (pip-only default)
  moodsong fluidsynth     moodsong.render.audio.render(renderer="fluidsynth")    (needs libfluidsynth3)
  peer pretty_midi        pretty_midi.PrettyMIDI.fluidsynth()             (FluidSynth via pretty_midi)
  peer symusic            symusic.Synthesizer(...).render()               (symusic's built-in synth)

Usage:
  python bench/render.py                          # J.S. Bach, Prelude in C (BWV 846) from the music21 corpus
  python bench/render.py --midi song.mid --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import symusic

from moodsong.render import audio as au

SR = 44100


def piano_piece(path: str | None) -> tuple[str, str]:
    if path:
        return path, os.path.basename(path)
    from music21 import corpus

    out = os.path.join(tempfile.mkdtemp(prefix="moodsong-bench-"), "bwv846.mid")
    corpus.parse("bach/bwv846").write("midi", fp=out)
    return out, "Bach BWV 846 Prelude in C (music21 corpus, piano)"


def tone(pitches, seconds=2.0) -> symusic.Score:
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, 120.0))
    t = symusic.Track("piano", 0, False)
    for p in pitches:
        t.notes.append(symusic.Note(0, int(seconds * 960), p, 100))
    s.tracks.append(t)
    return s


def peaks(x: np.ndarray, sr: int, k: int) -> list[float]:
    X = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    f = np.fft.rfftfreq(len(x), 1 / sr)
    out: list[float] = []
    for i in np.argsort(X)[::-1]:
        if f[i] > 50 and all(abs(f[i] - p) > 15 for p in out):
            out.append(float(f[i]))
        if len(out) == k:
            break
    return out


def tuning(render_fn) -> tuple[float, bool]:
    """(A4 peak in Hz, whether a C major triad shows C4, E4 and G4 among its 6 largest peaks)."""
    a4 = render_fn(tone([69]))
    a4_hz = peaks(a4[int(0.1 * SR) : int(1.5 * SR)], SR, 1)[0]
    triad = render_fn(tone([60, 64, 67]))
    p = peaks(triad[int(0.1 * SR) : int(1.5 * SR)], SR, 6)
    ok = all(any(abs(q - hz) / hz < 0.02 for q in p) for hz in (261.63, 329.63, 392.0))
    return a4_hz, ok


def renderers(sf2: str):
    """name -> (render(score) -> mono float array at 44.1 kHz, setup error or "")."""
    out = {}
    for name in ("midirenderer", "fluidsynth"):
        reason = au.available_renderers()[name]
        fn = None if reason else (lambda s, n=name: au.render(s, renderer=n).samples.mean(axis=1))
        out[f"moodsong {name}"] = (fn, reason)

    try:
        import pretty_midi

        au.resolve_renderer("fluidsynth")  # pretty_midi needs the same library

        def pm(s: symusic.Score) -> np.ndarray:
            with tempfile.NamedTemporaryFile(suffix=".mid") as f:
                s.dump_midi(f.name)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return pretty_midi.PrettyMIDI(f.name).fluidsynth(fs=SR, sf2_path=sf2)

        out["peer pretty_midi.fluidsynth"] = (pm, "")
    except Exception as exc:  # noqa: BLE001 - report any reason it cannot run
        out["peer pretty_midi.fluidsynth"] = (None, str(exc))

    try:
        synth = symusic.Synthesizer(sf2, SR, 0)
        synth.render(tone([60], 0.1), stereo=True)  # fails on symusic 0.6.0 (buffer not convertible)

        def sy(s: symusic.Score) -> np.ndarray:
            return np.asarray(synth.render(s, stereo=True)).mean(axis=0)

        out["peer symusic.Synthesizer"] = (sy, "")
    except Exception as exc:  # noqa: BLE001
        out["peer symusic.Synthesizer"] = (None, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi", help="piano MIDI file (default: BWV 846 from the music21 corpus)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    path, label = piano_piece(args.midi)
    score = symusic.Score(path)
    sf2 = str(au.default_soundfont())
    music_s = float(score.to("second").end())
    print(f"piece: {label}: {music_s:.1f} s, {sum(len(t.notes) for t in score.tracks)} notes; soundfont {os.path.basename(sf2)}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, symusic {symusic.__version__ if hasattr(symusic, '__version__') else '?'}")
    print(f"{'renderer':30} {'audio s':>7} {'wall s':>7} {'x RT wall':>9} {'cpu s':>6} {'x RT cpu':>8} {'A4 Hz':>7} {'C-E-G':>5}")
    results = {}
    for name, (fn, reason) in renderers(sf2).items():
        if fn is None:
            print(f"{name:30} unavailable: {reason}")
            continue
        best, best_cpu, audio_s = float("inf"), float("inf"), 0.0
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            y = fn(score)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
            audio_s = len(y) / SR
        a4, triad = tuning(fn)
        results[name] = audio_s / best
        print(
            f"{name:30} {audio_s:7.1f} {best:7.3f} {audio_s / best:9.1f} {best_cpu:6.3f} {audio_s / best_cpu:8.1f}"
            f" {a4:7.1f} {'yes' if triad else 'NO':>5}"
        )
    for ours, peer in (("moodsong fluidsynth", "peer pretty_midi.fluidsynth"), ("moodsong midirenderer", "peer symusic.Synthesizer")):
        if ours in results and peer in results:
            print(f"ratio {ours} / {peer} (wall): {results[ours] / results[peer]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
