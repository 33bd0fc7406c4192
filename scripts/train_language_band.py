"""Fit the English/Chinese decision for spoken requests whose language Whisper is unsure of.

Whisper's language detection on a 2-3 s request is often unsure: on espeak-ng's voices, English requests give
Chinese a probability of up to 0.09 and Mandarin ones as little as 0.006, often below English's. moodsong
hears Chinese once its probability reaches 0.005 (``moodsong.emotion.voice._ZH_MIN_PROB``); in the band where
Chinese passes that floor but stays below English, this logistic regression on the log-probabilities of all of
Whisper's languages decides (``moodsong.emotion.voice.LanguageBand``): the other languages' probabilities tell
the two apart better than English's and Chinese's alone.

Training data: the development requests of ``bench/voice_keywords.py`` (every prompt set except the held-out
``held6``) spoken by its espeak-ng voices (English: four voices at 130 and 175 words/min; Chinese: the Mandarin
pinyin voice, male at 130 and female at 160), with the bundled multilingual base model. Only utterances in
the band are fitted. The script prints a cross-validation grouped by request text and writes
``src/moodsong/data/whisper_language_band.json``.

Usage::

    python scripts/train_language_band.py [--C 0.3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
OUT = REPO / "src" / "moodsong" / "data" / "whisper_language_band.json"


def requests():
    """(language, request text, text to speak, set name) of every development prompt set."""
    import voice_keywords as vk

    en = {"bench": vk.PROMPTS, "new": vk.PROMPTS_NEW, "held4": vk.PROMPTS_HELD4, "held5": vk.PROMPTS_HELD5}
    zh = {"bench": vk.PROMPTS_ZH, "new": vk.PROMPTS_ZH_NEW, "held": vk.PROMPTS_ZH_HELD, "held2": vk.PROMPTS_ZH_HELD2,
          "held3": vk.PROMPTS_ZH_HELD3, "held4": vk.PROMPTS_ZH_HELD4, "held5": vk.PROMPTS_ZH_HELD5}
    for name, prompts in en.items():
        for spec in vk.ENGLISH_VOICES.split(","):
            yield "en", spec, prompts, name
    for name, prompts in zh.items():
        for spec in vk.CHINESE_VOICES.split(","):
            yield "zh", spec, prompts, name


def detect_all() -> list[dict]:
    from tqdm.auto import tqdm

    import moodsong.emotion.voice as voice

    model = voice._whisper_model(str(voice._whisper_model_path(None)))
    jobs = [(lang, spec, p, name) for lang, spec, prompts, name in requests() for p in prompts]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "request.wav"
        for lang, spec, prompt, name in tqdm(jobs, desc="spoken requests", unit="request"):
            text, spoken = (prompt, prompt) if lang == "en" else prompt
            v, speed = spec.split(":")
            subprocess.run(["espeak-ng", "-v", v, "-s", speed, "-w", str(wav), spoken], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples, _, _ = voice.load_audio(wav)
            _lang, _p, probs = model.detect_language(samples)
            rows.append({"language": lang, "text": text, "voice": spec, "set": name, "probs": dict(probs)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: python scripts/train_language_band.py --C 0.3")
    ap.add_argument("--C", type=float, default=0.3, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    os.environ.setdefault("MOODSONG_WHISPER_THREADS", "2")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    from moodsong.emotion.voice import _ZH_MIN_PROB, LanguageBand
    from moodsong.fileio import atomic_path

    rows = detect_all()
    languages = sorted({k for r in rows for k in r["probs"]})
    P = np.array([[r["probs"].get(k, 0.0) for k in languages] for r in rows])
    y = np.array([r["language"] == "zh" for r in rows])
    zh, en = P[:, languages.index("zh")], P[:, languages.index("en")]
    band = (zh >= _ZH_MIN_PROB) & (zh < en)
    X = LanguageBand.features(P)
    idx = np.flatnonzero(band)
    groups = [rows[i]["text"] for i in idx]
    folds = min(10, len(set(groups)))
    cv = cross_val_predict(LogisticRegression(C=args.C, max_iter=5000), X[idx], y[idx], groups=groups,
                           cv=GroupKFold(folds), method="predict_proba")[:, 1] > 0.5
    def errors(zh_heard: np.ndarray, truth: np.ndarray) -> dict[str, int]:
        return {"en_heard_as_zh": int((zh_heard & ~truth).sum()), "zh_heard_as_en": int((~zh_heard & truth).sum())}

    report = {
        "utterances": len(rows), "in_band": {"en": int((~y[idx]).sum()), "zh": int(y[idx].sum())},
        "floor_alone": errors(zh >= _ZH_MIN_PROB, y),
        "grouped_cv_in_band": errors(cv, y[idx]),
        "C": args.C,
    }
    clf = LogisticRegression(C=args.C, max_iter=5000).fit(X[idx], y[idx])
    doc = {"languages": languages, "coef": [round(float(c), 6) for c in clf.coef_[0]],
           "bias": round(float(clf.intercept_[0]), 6), "report": report,
           "source": "espeak-ng requests of bench/voice_keywords.py (all sets but held6), multilingual Whisper base"}
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
