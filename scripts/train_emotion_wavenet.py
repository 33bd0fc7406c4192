"""Train the emotion-conditional WaveNet-NADE (``src/moodsong/data/emotion_wavenet.*``) from ../shared/data.

The model is the shipped ``pop_wavenet`` (note-state frames, 16th notes, 78 pitches) with a 4-number
condition: soft Russell-quadrant weights (:func:`moodsong.models.conditional_rbm.condition_vector`),
added to every gated block and to the output biases. It starts as ``pop_wavenet`` exactly (the
condition weights start at zero) and is fine-tuned on EMOPIA's train-split clips with their human
quadrant labels (one-hot), random 256-step crops and transpositions of up to +-3 semitones (small
shifts keep a piece's mode and roughly its register). One condition in ten is replaced by the uniform
vector, so the model also knows "no particular emotion".

Each epoch scores EMOPIA's valid split (114 clips, songs disjoint from train): NLL per step with the true
condition and with the uniform one (the gap is what the condition explains), and the accuracy of the model
as a classifier, argmax_q log p(clip | q) (a direct test that the distribution depends on the emotion).
The best epoch by valid NLL is kept.

Usage:
    nice -n 10 python scripts/train_emotion_wavenet.py --minutes 25
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from moodsong.allocator import reuse_freed_memory
from moodsong.checkpoint import load_checkpoint, save_checkpoint
from moodsong.emotion.music import emopia_index
from moodsong.evaluate import pad_batch
from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE
from moodsong.pianoroll import midi_to_roll
from moodsong.train_temporal import _safe_shift_range, transpose_frames

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "moodsong" / "data"


def emopia_rolls(root: Path, config) -> dict[str, list[tuple[np.ndarray, int]]]:
    """``{"train": [(frames, quadrant), ...], "valid": [...]}`` for EMOPIA's labelled clips."""
    out: dict[str, list] = {"train": [], "valid": []}
    for _, path, quad, split in emopia_index(root):
        roll = midi_to_roll(path, config).astype(np.float32)
        if roll.shape[0] > 16 and roll.sum() > 0:
            out[split].append((roll, quad))
    return out


@torch.no_grad()
def clip_log_probs(model, clips, conds: np.ndarray, batch: int = 8) -> np.ndarray:
    """Sum of log p(frames | cond) per clip for each condition row: shape ``(len(clips), len(conds))``."""
    model.eval()
    out = np.zeros((len(clips), len(conds)))
    for i in range(0, len(clips), batch):
        group = [c[0] for c in clips[i: i + batch]]
        v, mask = pad_batch(group)
        for j, c in enumerate(conds):
            cond = torch.as_tensor(c, dtype=torch.float32).expand(v.shape[0], -1)
            out[i: i + len(group), j] = model.log_prob(v, mask, cond).sum(1).numpy()
    return out


def validate(model, valid) -> dict:
    eye = np.eye(4, dtype=np.float32)
    lp = clip_log_probs(model, valid, np.vstack([eye, np.full((1, 4), 0.25, np.float32)]))
    steps = sum(c[0].shape[0] for c in valid)
    q = np.array([c[1] for c in valid])
    true = lp[np.arange(len(valid)), q - 1].sum()
    return {"val_nll": -true / steps, "val_nll_uniform": -lp[:, 4].sum() / steps,
            "val_quadrant_accuracy": float((lp[:, :4].argmax(1) + 1 == q).mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--cond-lr", type=float, default=1e-2,
                    help="learning rate of the new condition weights (they start at zero and carry a weak signal)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256, help="training crop, in 16th-note steps")
    ap.add_argument("--transpose", type=int, default=3)
    ap.add_argument("--uniform-share", type=float, default=0.1, help="share of training conditions replaced by uniform")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(DATA / "emotion_wavenet"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    base, _, _ = load_checkpoint(DATA / "pop_wavenet")
    cfg = WaveNetConfig.from_dict({**base.config.to_dict(), "cond_dim": 4})
    model = WaveNetNADE(cfg)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".cond" in k or k.startswith("cond_b") for k in missing), missing
    with torch.no_grad():
        for k in missing:  # the condition starts with no effect: the model begins as pop_wavenet
            model.get_parameter(k).zero_()
    rep = cfg.representation
    data = emopia_rolls(Path(args.shared) / "emopia", cfg.pianoroll)
    train, valid = data["train"], data["valid"]
    print(f"EMOPIA: {len(train)} train clips, {len(valid)} valid clips")
    cond_params = [p for n, p in model.named_parameters() if n in missing]
    rest = [p for n, p in model.named_parameters() if n not in missing]
    opt = torch.optim.Adam([{"params": rest, "lr": args.lr}, {"params": cond_params, "lr": args.cond_lr}])
    history = []
    row = {"epoch": 0, **validate(model, valid)}
    history.append(row)
    print(row, flush=True)
    best = row["val_nll"]
    t_start = time.perf_counter()
    epoch = 0
    while (time.perf_counter() - t_start) / 60 < args.minutes:
        epoch += 1
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for s in range(0, len(order), args.batch_size):
            pieces, conds = [], []
            for i in order[s: s + args.batch_size]:
                v, q = train[i]
                if v.shape[0] > args.crop:
                    o = int(rng.integers(0, v.shape[0] - args.crop + 1))
                    v = v[o: o + args.crop]
                lo, hi = _safe_shift_range(v, rep, args.transpose)
                pieces.append(transpose_frames(v, int(rng.integers(lo, hi + 1)), rep))
                c = np.eye(4, dtype=np.float32)[q - 1]
                conds.append(np.full(4, 0.25, np.float32) if rng.random() < args.uniform_share else c)
            v, mask = pad_batch(pieces)
            loss = model.loss(v, mask, torch.from_numpy(np.stack(conds)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5),
               **{k: round(v, 5) for k, v in validate(model, valid).items()},
               "minutes": round((time.perf_counter() - t_start) / 60, 2)}
        history.append(row)
        print(row, flush=True)
        if row["val_nll"] < best:
            best = row["val_nll"]
            save_checkpoint(model, args.out, dtype=torch.float16, epoch=epoch, history=history, best_val_nll=best,
                            source="EMOPIA 1.0 train split (876 clips, CC BY 4.0), fine-tuned from pop_wavenet",
                            condition="soft quadrant weights (moodsong.models.conditional_rbm.condition_vector)",
                            train_config=vars(args) | {"out": Path(args.out).name, "shared": "../shared/data"},
                            stored_dtype="float16")
    print(f"best valid NLL {best:.4f} (epoch 0 = pop_wavenet: {history[0]['val_nll']:.4f}); wrote {args.out}")
    return 0 if math.isfinite(best) else 1


if __name__ == "__main__":
    sys.exit(main())
