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
The best epoch by valid NLL is kept. The training loop is the library's
(:func:`moodsong.training.sequence.train_sequence_model` with per-piece conditions); this script
only gathers the clips and labels, warm-starts the model and stores the best epoch as float16.

Usage:
    nice -n 10 python scripts/train_emotion_wavenet.py --minutes 25
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from moodsong.emotion.music import emopia_index
from moodsong.evaluation.likelihood import pad_batch
from moodsong.models.checkpoint import load_checkpoint, save_checkpoint
from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE
from moodsong.representation.pianoroll import midi_to_roll
from moodsong.training.sequence import TemporalTrainConfig, train_sequence_model

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


def emotion_metrics(valid):
    """Per epoch: NLL with the uniform condition and the accuracy of argmax_q log p(clip | q)."""
    def metrics(model) -> dict:
        eye = np.eye(4, dtype=np.float32)
        lp = clip_log_probs(model, valid, np.vstack([eye, np.full((1, 4), 0.25, np.float32)]))
        steps = sum(c[0].shape[0] for c in valid)
        q = np.array([c[1] for c in valid])
        return {"val_nll_uniform": round(-lp[:, 4].sum() / steps, 5),
                "val_quadrant_accuracy": round(float((lp[:, :4].argmax(1) + 1 == q).mean()), 5)}
    return metrics


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
    torch.manual_seed(args.seed)

    base, _, _ = load_checkpoint(DATA / "pop_wavenet")
    cfg = WaveNetConfig.from_dict({**base.config.to_dict(), "cond_dim": 4})
    model = WaveNetNADE(cfg)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".cond" in k or k.startswith("cond_b") for k in missing), missing
    with torch.no_grad():
        for k in missing:  # the condition starts with no effect: the model begins as pop_wavenet
            model.get_parameter(k).zero_()
    data = emopia_rolls(Path(args.shared) / "emopia", cfg.pianoroll)
    train, valid = data["train"], data["valid"]
    print(f"EMOPIA: {len(train)} train clips, {len(valid)} valid clips")
    one_hot = np.eye(4, dtype=np.float32)
    tc = TemporalTrainConfig(epochs=10**6, lr=args.lr, cond_lr=args.cond_lr, batch_size=args.batch_size,
                             max_len=args.crop, transpose=args.transpose, cond_dropout=args.uniform_share,
                             patience=10**6, max_minutes=args.minutes, seed=args.seed, device="cpu")
    with tempfile.TemporaryDirectory(prefix="emotion-wavenet-") as run:
        best_model, history = train_sequence_model(
            "wavenet", [c[0] for c in train], [c[0] for c in valid], run, tc=tc, init_model=model,
            conditions=[one_hot[q - 1] for _, q in train], valid_conditions=[one_hot[q - 1] for _, q in valid],
            metrics=emotion_metrics(valid), source="EMOPIA train split", log=lambda s: print(s, flush=True))
    best = min(h["val_nll"] for h in history)
    save_checkpoint(best_model, args.out, dtype=torch.float16, epoch=min(history, key=lambda h: h["val_nll"])["epoch"],
                    history=history, best_val_nll=best,
                    source="EMOPIA 1.0 train split (876 clips, CC BY 4.0), fine-tuned from pop_wavenet",
                    condition="soft quadrant weights (moodsong.models.conditional_rbm.condition_vector)",
                    train_config=vars(args) | {"out": Path(args.out).name, "shared": "../shared/data"},
                    stored_dtype="float16")
    print(f"best valid NLL {best:.4f} (epoch 0 = pop_wavenet: {history[0]['val_nll']:.4f}); wrote {args.out}")
    return 0 if math.isfinite(best) else 1


if __name__ == "__main__":
    sys.exit(main())
