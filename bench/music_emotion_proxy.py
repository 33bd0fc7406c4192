"""Does the music-emotion estimator's valence travel? A proxy check for music from other domains.

The estimator learns from EMOPIA: transcribed pop-piano performances with played dynamics and free
timing. Music from elsewhere (game or film scores, hand-entered MIDI) is often quantised, at one
velocity, in other keys and voicings. Two checks stand in for that music, both on material that no
model was fitted or selected on:

1. **EMOPIA valid, score-like**: each of the 114 valid clips rendered ``--versions`` times by
   :func:`moodsong.emotion.music.random_plain_version` (tempo x0.8-1.25, onsets and durations on a
   0.125 s grid, one velocity 50-110, transposed -6..+5, accompaniment re-voiced an octave). Reported:
   4Q / valence / arousal accuracy against the human labels, and how often the valence sign agrees with
   the same model's reading of the original clip. The same versions are given to every model.
2. **POP909 valid songs** (song number NNN % 10 == 5, never used to fit or select): valence of each song
   (mean of its 30 s windows) against its annotated main key, major = positive. Reported: ROC AUC,
   sign accuracy and the majority-class share; also for score-like versions of the songs. The key is a
   weak label (a minor-key pop song is not always sad), so this is a check of the mode cue, not of
   listeners' valence.

3. **Folk airs** (``--folk``; added 2026-12-02): the tunes of *Aird's Airs* (music21's corpus, six books of
   Scottish and other airs in ABC, one melody line, no dynamics) whose key field names a major or a minor
   key; valence of each tune against its mode, major = positive. Another domain again (monophonic,
   notated), with the same weak label as POP909's: the mode of the key, not listeners' valence.

Also: EMOPIA valid as it is, and the time per clip (``predict_notes``: features + CNN) on valid clips.

Usage::

    nice -n 10 python bench/music_emotion_proxy.py --emopia ../shared/data/emopia \\
        --pop909 ../shared/data/pop909 --before main [--model path.json] [--versions 3] [--json out.json] [--folk]

``--before REF`` reads the shipped model of a git ref (``git show REF:src/moodsong/data/...``) and
scores it beside the current one in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from moodsong.emotion.music import (
    DEFAULT_MODEL,
    MusicEmotionEstimator,
    emopia_clips,
    note_windows,
    pop909_songs,
    random_plain_version,
)

REPO = Path(__file__).resolve().parents[1]
DATA = "src/moodsong/data"


def model_from_ref(ref: str, folder: Path) -> MusicEmotionEstimator:
    """The shipped estimator as committed at git ``ref`` (its JSON and CNN weights) written to ``folder``."""
    spec = json.loads(subprocess.run(["git", "show", f"{ref}:{DATA}/{DEFAULT_MODEL}"], cwd=REPO, check=True,
                                     capture_output=True).stdout)
    (folder / DEFAULT_MODEL).write_text(json.dumps(spec))
    if spec.get("sequence_model"):
        blob = subprocess.run(["git", "show", f"{ref}:{DATA}/{spec['sequence_model']}"], cwd=REPO, check=True,
                              capture_output=True).stdout
        (folder / spec["sequence_model"]).write_bytes(blob)
    return MusicEmotionEstimator.load(folder / DEFAULT_MODEL)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney), ties counted half."""
    pos, neg = score[positive], score[~positive]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size))


def song_valence(est: MusicEmotionEstimator, songs: list[list]) -> np.ndarray:
    """Mean valence of each song's windows."""
    return np.array([est.predict_pieces(w)["valence"].mean() for w in songs])


def folk_airs() -> tuple[list, np.ndarray]:
    """Aird's Airs from music21's corpus: (notes of each tune in a major or minor key, True where major).

    Each tune is written to MIDI by music21 and read back as moodsong reads any file (tempo from the
    tune's Q: field, 120 qpm without one). Modal tunes (mixolydian, dorian, ...) are left out, and so are
    the few whose repeats music21 cannot unfold.
    """
    from music21 import corpus, key

    from moodsong.emotion.music import score_notes
    from moodsong.representation.pianoroll import read_score

    notes, major = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tune.mid"
        for book in range(1, 7):
            for tune in corpus.parse(f"airdsAirs/book{book}.abc").scores:
                keys = list(tune.recurse().getElementsByClass(key.Key))
                if not keys or keys[0].mode not in ("major", "minor"):
                    continue
                try:
                    tune.write("midi", fp=str(path))
                    n = score_notes(read_score(path))
                except Exception:  # noqa: BLE001 - a few tunes have repeats music21 cannot unfold: skipped
                    continue
                if len(n) >= 8:
                    notes.append(n)
                    major.append(keys[0].mode == "major")
    return notes, np.array(major, bool)


def evaluate(est: MusicEmotionEstimator, valid, plain, q, pop, pop_plain, major, folk=None) -> dict:
    out = {"emopia_valid": est.score_pieces(valid, q)}
    orig_v = est.predict_pieces(valid)["valence"] >= 0
    k = len(plain) // len(valid)
    pred = est.predict_pieces(plain)
    qq = np.tile(q, k)
    out["emopia_valid_score_like"] = {
        **est._accuracies(pred, qq),
        "valence_sign_agrees_with_original": float(np.mean((pred["valence"] >= 0) == np.tile(orig_v, k))),
    }
    for name, songs in (("pop909_valid", pop), ("pop909_valid_score_like", pop_plain)):
        sv = song_valence(est, songs)
        out[name] = {"auc": auc(sv, major), "sign_accuracy": float(np.mean((sv >= 0) == major)),
                     "majority": float(max(major.mean(), 1 - major.mean())), "songs": int(major.size)}
    if folk is not None:
        tunes, folk_major = folk
        fv = est.predict_pieces(tunes)["valence"]
        out["folk_airs"] = {"auc": auc(fv, folk_major), "sign_accuracy": float(np.mean((fv >= 0) == folk_major)),
                            "majority": float(max(folk_major.mean(), 1 - folk_major.mean())),
                            "tunes": int(folk_major.size)}
    times = []
    for n in valid:
        t = time.perf_counter()
        est.predict_notes(n)
        times.append(time.perf_counter() - t)
    out["ms_per_clip"] = {"median": 1e3 * float(np.median(times)), "mean": 1e3 * float(np.mean(times))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emopia", default=str(REPO.parent / "shared" / "data" / "emopia"))
    ap.add_argument("--pop909", default=str(REPO.parent / "shared" / "data" / "pop909"))
    ap.add_argument("--model", default=None, help="estimator JSON (default: the shipped one)")
    ap.add_argument("--before", default=None, help="git ref whose shipped estimator is scored too")
    ap.add_argument("--versions", type=int, default=3, help="score-like versions per valid clip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--folk", action="store_true", help="also the folk airs of music21's corpus (check 3)")
    args = ap.parse_args()

    _, valid, q, _ = emopia_clips(args.emopia, only="valid")
    rng = np.random.default_rng(args.seed)
    plain = [random_plain_version(n, rng) for _ in range(args.versions) for n in valid]
    ids, notes, major = pop909_songs(args.pop909, "valid")
    pop = [note_windows(n) or [n] for n in notes]
    pop_plain = [[random_plain_version(w, rng) for w in ws] for ws in pop]
    print(f"EMOPIA valid: {len(valid)} clips ({len(plain)} score-like versions); POP909 valid: {len(ids)} songs "
          f"({int(major.sum())} major), {sum(map(len, pop))} windows of 30 s", flush=True)
    folk = folk_airs() if args.folk else None
    if folk is not None:
        print(f"folk airs: {len(folk[0])} tunes ({int(folk[1].sum())} major)", flush=True)

    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            models[f"before ({args.before})"] = model_from_ref(args.before, Path(tmp))
        models["after" if args.before else "model"] = (MusicEmotionEstimator.load(args.model) if args.model
                                                       else MusicEmotionEstimator.load_default())
        results = {name: evaluate(est, valid, plain, q, pop, pop_plain, major, folk) for name, est in models.items()}

    rows = [
        ("EMOPIA valid 4Q / V / A", lambda r: "{quadrant:.3f} / {valence:.3f} / {arousal:.3f}".format(**r["emopia_valid"])),
        ("EMOPIA valid score-like 4Q / V / A", lambda r: "{quadrant:.3f} / {valence:.3f} / {arousal:.3f}".format(
            **r["emopia_valid_score_like"])),
        ("  valence sign as on the original", lambda r: f"{r['emopia_valid_score_like']['valence_sign_agrees_with_original']:.3f}"),
        ("POP909 valid: AUC / sign acc (majority)", lambda r: "{auc:.3f} / {sign_accuracy:.3f} ({majority:.3f})".format(**r["pop909_valid"])),
        ("POP909 valid score-like: AUC / sign acc", lambda r: "{auc:.3f} / {sign_accuracy:.3f}".format(**r["pop909_valid_score_like"])),
        ("ms per clip (median / mean)", lambda r: "{median:.1f} / {mean:.1f}".format(**r["ms_per_clip"])),
    ]
    if folk is not None:
        rows.insert(-1, ("folk airs: AUC / sign acc (majority)",
                         lambda r: "{auc:.3f} / {sign_accuracy:.3f} ({majority:.3f})".format(**r["folk_airs"])))
    names = list(results)
    print("| check | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for label, fmt in rows:
        print(f"| {label} | " + " | ".join(fmt(results[n]) for n in names) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
