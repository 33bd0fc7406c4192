"""MidiTok's REMI against the hand-written melody events the song model used before (issue 12).

The song model writes its melody as MidiTok REMI tokens (:func:`moodsong.song.melody.song_events`).
Before, it used its own REMI-style events (bar, sixteenth position, key-relative pitch 36..95, one of
ten durations); that encoding is kept here, as the baseline. On the same melodies, in one run:

- tokens per bar and per note;
- round trip: the notes read back from the tokens against the melody on the sixteenth grid
  (onset and pitch; and with the duration);
- encode + decode time per song (median over songs and ``--repeats``, the two alternating).

    python bench/melody_tokens.py --data ../shared/data/pop909 --songs 40
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from moodsong.corpora.pop909 import STEPS_PER_BAR, load_song, song_folders
from moodsong.errors import MoodsongError
from moodsong.song.melody import Vocab, song_events, standard_vocab
from moodsong.song.model import _decode

TPQ = 480
TICKS_PER_STEP = TPQ // 4


def melody_score(song):
    import symusic

    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, float(song.qpm)))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("Melody", 0, False)
    m = song.melody
    track.notes = symusic.Note.from_numpy((m[:, 0] * TICKS_PER_STEP).astype(np.int32),
                                          (m[:, 1] * TICKS_PER_STEP).astype(np.int32),
                                          m[:, 2].astype(np.int8), m[:, 3].astype(np.int8))
    score.tracks.append(track)
    return score


HAND_DURATIONS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # the baseline's note lengths, in sixteenth steps


def hand_written_roundtrip(song) -> tuple[int, np.ndarray]:
    """The baseline: BAR, then POS, PITCH (key-relative, 36..95), DUR (nearest of ten) per note, and back."""
    tokens, out = [], []
    by_bar: dict[int, list] = {}
    for s, d, p, _ in song.melody.tolist():
        by_bar.setdefault(s // STEPS_PER_BAR, []).append((s % STEPS_PER_BAR, d, p))
    for bar in range(song.num_bars):
        tokens.append(("bar", 0))
        last = -1
        for pos, dur, pitch in by_bar.get(bar, []):
            if pos <= last:
                continue
            last = pos
            tokens += [("pos", pos), ("pitch", int(np.clip(pitch - song.tonic, 36, 95))),
                       ("dur", HAND_DURATIONS[int(np.argmin([abs(x - dur) for x in HAND_DURATIONS]))])]
    bar, onset, pitch = -1, 0, 0
    for kind, v in tokens:
        if kind == "bar":
            bar += 1
        elif kind == "pos":
            onset = bar * STEPS_PER_BAR + v
        elif kind == "pitch":
            pitch = v + song.tonic
        else:
            out.append((onset, v, pitch))
    return len(tokens), np.array(out, np.int64).reshape(-1, 3)


def moodsong_roundtrip(song, vocab) -> tuple[int, np.ndarray]:
    """moodsong's melody events (MidiTok REMI) and the song model's decoder."""
    tokens, _ = song_events(song)
    back = _decode(vocab, tokens.tolist(), 0, song.tonic)
    return len(tokens), np.array(back, np.int64).reshape(-1, 4)[:, :3]


def miditok_roundtrip(tok, song) -> tuple[int, np.ndarray]:
    seq = tok.encode(melody_score(song))
    if isinstance(seq, list):  # one sequence per track
        seq = seq[0]
    back = tok.decode([seq])
    notes = back.tracks[0].notes.numpy() if len(back.tracks) else None
    if notes is None or not len(notes["time"]):
        return len(seq.ids), np.zeros((0, 3), np.int64)
    step = back.ticks_per_quarter // 4
    arr = np.stack([notes["time"] // step, notes["duration"] // step, notes["pitch"]], 1)
    return len(seq.ids), arr.astype(np.int64)


def match(a: np.ndarray, b: np.ndarray, with_duration: bool) -> float:
    cols = slice(0, 3) if with_duration else [0, 2]
    sa = {tuple(r) for r in a[:, cols].tolist()}
    sb = {tuple(r) for r in b[:, cols].tolist()}
    return len(sa & sb) / max(len(sa), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="POP909 root")
    ap.add_argument("--songs", type=int, default=40, help="validation songs (NNN % 10 == 5)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import miditok

    tok = miditok.REMI(miditok.TokenizerConfig(beat_res={(0, 4): 4, (4, 12): 4}, use_velocities=False,
                                               use_chords=False, use_programs=False, use_tempos=False,
                                               use_time_signatures=False))
    songs = []
    for f in song_folders(args.data, "valid"):
        try:
            songs.append(load_song(f))
        except MoodsongError:
            continue
        if len(songs) >= args.songs:
            break
    vocab = Vocab(standard_vocab())
    setups = {"hand-written REMI-style events (before)": hand_written_roundtrip,
              "MidiTok REMI via moodsong.song.melody (now)": lambda s: moodsong_roundtrip(s, vocab),
              "MidiTok REMI, tokenizer alone (encode/decode)": lambda s: miditok_roundtrip(tok, s)}
    rows = {k: [] for k in setups}
    times = {k: [] for k in setups}
    for s in songs:
        truth = s.melody[:, :3][np.lexsort((s.melody[:, 2], s.melody[:, 0]))]
        for _ in range(args.repeats):
            for name, fn in setups.items():
                t0 = time.perf_counter()
                fn(s)
                times[name].append(time.perf_counter() - t0)
        for name, fn in setups.items():
            n, back = fn(s)
            rows[name].append((n / s.num_bars, n / len(truth), match(truth, back, False), match(truth, back, True)))
    print(f"{len(songs)} POP909 validation melodies, {sum(len(s.melody) for s in songs)} notes\n")
    print("| vocabulary | tokens per bar | tokens per note | notes read back (onset, pitch) | (+ duration) "
          "| encode+decode ms per song (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        a = np.array(r)
        print(f"| {name} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.2f} | {a[:, 2].mean():.4f} | {a[:, 3].mean():.4f} "
              f"| {1000 * statistics.median(times[name]):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
