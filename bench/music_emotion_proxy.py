"""Does the music-emotion estimator's valence travel? A proxy check for music from other domains.

The estimator learns from EMOPIA: transcribed pop-piano performances with played dynamics and free
timing. Music from elsewhere (game or film scores, hand-entered MIDI) is often quantised, at one
velocity, in other keys and voicings, or a lone melody. These checks stand in for that music:

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

3. **Collections of music21's corpus, against their mode** (``--corpora``; ``--folk`` is ``airds``):
   Aird's Airs (1,066 airs, one melody line), Bach's chorales (412, four notated parts), Ryan's Mammoth
   Collection (978 fiddle tunes) and O'Neill's 1850 (1,879 Irish tunes). Valence of each piece against the
   mode its key names, major = positive: the same weak label as POP909's, in other domains (notated,
   often a lone melody). Reported: ROC AUC, sign accuracy, majority share and the mean gate (how much
   the pieces look like played performances). The first three were looked at while the score expert
   was built (2026-12-02, sixth session); O'Neill's was not, and is the held-out one.
4. **EMOPIA valid, top line only**: each valid clip's top line (:func:`moodsong.emotion.music.melody_version`)
   as a score-like version, against the human labels: a lone melody from a labelled piece.

Also: EMOPIA valid as it is, and the time per clip (``predict_notes``: features + CNN) on valid clips.

Usage::

    nice -n 10 python bench/music_emotion_proxy.py --emopia ../shared/data/emopia \\
        --pop909 ../shared/data/pop909 --before main [--model path.json] [--versions 3] [--json out.json]
        [--corpora airds chorales ryans oneills] [--cache folder]

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
    melody_version,
    note_windows,
    pop909_songs,
    random_plain_version,
)

REPO = Path(__file__).resolve().parents[1]
DATA = "src/moodsong/data"


def model_from_ref(ref: str, folder: Path) -> MusicEmotionEstimator:
    """The shipped estimator as committed at git ``ref`` (its JSON, CNN and tree weights) written to ``folder``."""
    spec = json.loads(subprocess.run(["git", "show", f"{ref}:{DATA}/{DEFAULT_MODEL}"], cwd=REPO, check=True,
                                     capture_output=True).stdout)
    (folder / DEFAULT_MODEL).write_text(json.dumps(spec))
    for part in ("sequence_model", "tree_model"):
        if spec.get(part):
            blob = subprocess.run(["git", "show", f"{ref}:{DATA}/{spec[part]}"], cwd=REPO, check=True,
                                  capture_output=True).stdout
            (folder / spec[part]).write_bytes(blob)
    return MusicEmotionEstimator.load(folder / DEFAULT_MODEL)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney), ties counted half."""
    pos, neg = score[positive], score[~positive]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size))


def song_valence(est: MusicEmotionEstimator, songs: list[list]) -> np.ndarray:
    """Mean valence of each song's windows."""
    return np.array([est.predict_pieces(w)["valence"].mean() for w in songs])


#: Tune collections of music21's corpus, with their role here (see the module docstring).
CORPORA = {
    "airds": ("Aird's Airs (folk airs, one line; development)", lambda p: "airdsAirs/" in p),
    "chorales": ("Bach chorales (four parts, notated; development)", lambda p: "/bach/" in p and "bwv" in p),
    "ryans": ("Ryan's Mammoth Collection (fiddle tunes, one line; development)", lambda p: "ryansMammoth/" in p),
    "oneills": ("O'Neill's 1850 (Irish tunes, one line; held out)", lambda p: "oneills1850/" in p),
}


def corpus_tunes(name: str, cache: Path | None = None) -> tuple[list, np.ndarray]:
    """The pieces of one music21 collection (``CORPORA``) in a major or minor key: ``(notes of each
    piece, True where major)``.

    Each piece is written to MIDI by music21 and read back as moodsong reads any file (tempo from the
    score, 120 qpm without one). The mode is the one the file's key names (ABC's K: field, MusicXML's
    mode); modal tunes (mixolydian, dorian, ...), pieces without one and the few whose repeats music21
    cannot unfold are left out. Parsing takes minutes, so ``cache`` keeps the notes (a pickle per name).
    """
    import pickle

    from music21 import corpus, key

    from moodsong.emotion.music import score_notes
    from moodsong.fileio import atomic_path
    from moodsong.representation.pianoroll import read_score

    if cache is not None and (cache / f"{name}.pkl").is_file():
        return pickle.loads((cache / f"{name}.pkl").read_bytes())
    paths = sorted(str(p) for p in corpus.getCorePaths() if CORPORA[name][1](str(p).replace("\\", "/")))
    notes, major = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tune.mid"
        for source in paths:
            parsed = corpus.parse(source)
            for tune in (parsed.scores if hasattr(parsed, "scores") else [parsed]):
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
    out = (notes, np.array(major, bool))
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache / f"{name}.pkl") as tmp:
            tmp.write_bytes(pickle.dumps(out))
    return out


def mode_check(est: MusicEmotionEstimator, pieces, major) -> dict:
    """Valence of each piece against its mode: ROC AUC, sign accuracy, majority share, mean gate."""
    out = est.predict_pieces(pieces)
    v = out["valence"]
    return {"auc": auc(v, major), "sign_accuracy": float(np.mean((v >= 0) == major)),
            "majority": float(max(major.mean(), 1 - major.mean())), "pieces": int(major.size),
            "performance": float(out["performance"].mean())}


def evaluate(est: MusicEmotionEstimator, valid, plain, melody, q, pop, pop_plain, major, tunes=None) -> dict:
    out = {"emopia_valid": est.score_pieces(valid, q)}
    out["emopia_valid_melody"] = est.score_pieces(melody, q)
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
    for name, (pieces, mode) in (tunes or {}).items():
        out[name] = mode_check(est, pieces, mode)
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
    ap.add_argument("--folk", action="store_true", help="also Aird's Airs (same as --corpora airds)")
    ap.add_argument("--corpora", nargs="*", default=[], choices=sorted(CORPORA),
                    help="music21 collections to check against their mode (check 3)")
    ap.add_argument("--cache", default=None, help="folder that keeps the parsed collections between runs")
    args = ap.parse_args()

    _, valid, q, _ = emopia_clips(args.emopia, only="valid")
    rng = np.random.default_rng(args.seed)
    plain = [random_plain_version(n, rng) for _ in range(args.versions) for n in valid]
    melody = [random_plain_version(melody_version(n), rng) for n in valid]
    ids, notes, major = pop909_songs(args.pop909, "valid")
    pop = [note_windows(n) or [n] for n in notes]
    pop_plain = [[random_plain_version(w, rng) for w in ws] for ws in pop]
    print(f"EMOPIA valid: {len(valid)} clips ({len(plain)} score-like versions); POP909 valid: {len(ids)} songs "
          f"({int(major.sum())} major), {sum(map(len, pop))} windows of 30 s", flush=True)
    collections = sorted(set(args.corpora) | ({"airds"} if args.folk else set()))
    tunes = {n: corpus_tunes(n, Path(args.cache) if args.cache else None) for n in collections}
    for n, (pieces, mode) in tunes.items():
        print(f"{CORPORA[n][0]}: {len(pieces)} pieces ({int(mode.sum())} major)", flush=True)

    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            models[f"before ({args.before})"] = model_from_ref(args.before, Path(tmp))
        models["after" if args.before else "model"] = (MusicEmotionEstimator.load(args.model) if args.model
                                                       else MusicEmotionEstimator.load_default())
        results = {name: evaluate(est, valid, plain, melody, q, pop, pop_plain, major, tunes)
                   for name, est in models.items()}

    rows = [
        ("EMOPIA valid 4Q / V / A", lambda r: "{quadrant:.3f} / {valence:.3f} / {arousal:.3f}".format(**r["emopia_valid"])),
        ("EMOPIA valid score-like 4Q / V / A", lambda r: "{quadrant:.3f} / {valence:.3f} / {arousal:.3f}".format(
            **r["emopia_valid_score_like"])),
        ("  valence sign as on the original", lambda r: f"{r['emopia_valid_score_like']['valence_sign_agrees_with_original']:.3f}"),
        ("EMOPIA valid, top line only 4Q / V / A", lambda r: "{quadrant:.3f} / {valence:.3f} / {arousal:.3f}".format(
            **r["emopia_valid_melody"])),
        ("POP909 valid: AUC / sign acc (majority)", lambda r: "{auc:.3f} / {sign_accuracy:.3f} ({majority:.3f})".format(**r["pop909_valid"])),
        ("POP909 valid score-like: AUC / sign acc", lambda r: "{auc:.3f} / {sign_accuracy:.3f}".format(**r["pop909_valid_score_like"])),
        ("ms per clip (median / mean)", lambda r: "{median:.1f} / {mean:.1f}".format(**r["ms_per_clip"])),
    ]
    for n in collections:
        rows.insert(-1, (f"{CORPORA[n][0]}: AUC / sign acc (majority) / gate",
                         lambda r, n=n: "{auc:.3f} / {sign_accuracy:.3f} ({majority:.3f}) / {performance:.2f}".format(
                             **r[n])))
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
