"""Training and data for the temporal models (RNN-RBM, WaveNet-NADE).

They generate through :mod:`moodsong.models.generate`.

Frames and representations
--------------------------
Both models see a piece as a sequence of binary frames of any width. A
*representation* (a small dict stored in the model config) says what a frame is:

- ``{"kind": "keys", "lowest_pitch": 21, "num_pitches": 88, "steps_per_quarter": 1}``:
  one bit per key sounding, the polyphonic benchmarks' format (JSB: quarter notes);
- ``{"kind": "note-state", <PianoRollConfig fields>}``: moodsong's ``[held | struck]``
  note-state rows (default 16th-note steps, 78 pitches).

Training loop
-------------
Adam on whole pieces (randomly cropped to ``max_len`` steps), optional random
transposition, validation NLL per frame after every epoch (exact for WaveNet-NADE;
for the RNN-RBM a quick AIS with ``val_ais_chains`` x ``val_ais_betas``, fine for
ranking epochs but biased low -- use ``moodsong evaluate`` for the reported figure),
early stopping after ``patience`` epochs without improvement, the best epoch kept as
``OUT/model`` and the latest (with optimizer state) as ``OUT/last`` for ``resume``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from moodsong.corpora.corpus import list_inputs, load_corpus, load_polyphonic
from moodsong.errors import MoodsongError
from moodsong.evaluation.likelihood import (
    BENCHMARK_REPRESENTATION,
    benchmark_frames,
    model_representation,
    pad_batch,
    sequence_nll,
)
from moodsong.fileio import atomic_path
from moodsong.models import TEMPORAL_MODELS, build_model
from moodsong.models.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from moodsong.models.frames import frames_to_roll, pianoroll_config, representation_width, roll_to_frames  # noqa: F401
from moodsong.representation.pianoroll import midi_to_roll
from moodsong.training import distributed as _dist
from moodsong.training.allocator import reuse_freed_memory
from moodsong.training.rbm import resolve_device

# --------------------------------------------------------------------------- representation


def midi_to_frames(path: str | os.PathLike, rep: dict) -> np.ndarray:
    """Read a MIDI file (e.g. a primer) into frames of ``rep``."""
    return roll_to_frames(midi_to_roll(path, pianoroll_config(rep)), rep)


def load_frames(source: str, rep: dict, split: str = "train") -> list[np.ndarray]:
    """Pieces of ``source`` as frames: a benchmark pickle/JSON split, or any corpus :func:`load_corpus` reads."""
    _, files, kind = list_inputs(source.rsplit(":", 1)[0] if source.endswith((":train", ":valid", ":test")) else source)
    if kind == "polyphonic":
        data = load_polyphonic(files[0])
        if not data.get(split):
            raise MoodsongError(f"{files[0]}: split {split!r} is empty")
        return benchmark_frames(data[split], rep)
    corpus = load_corpus(source, pianoroll_config(rep))
    return [roll_to_frames(r, rep) for r in corpus.rolls if r.shape[0] > 1]


def transpose_frames(v: np.ndarray, shift: int, rep: dict) -> np.ndarray:
    """Shift frames by ``shift`` pitch columns (each half separately for note-state); notes pushed out are dropped."""
    if shift == 0:
        return v
    P = rep["num_pitches"]
    blocks = v.reshape(v.shape[0], -1, P)
    out = np.zeros_like(blocks)
    if shift > 0:
        out[:, :, shift:] = blocks[:, :, :-shift]
    else:
        out[:, :, :shift] = blocks[:, :, -shift:]
    return out.reshape(v.shape)


def _safe_shift_range(v: np.ndarray, rep: dict, max_shift: int) -> tuple[int, int]:
    P = rep["num_pitches"]
    cols = np.flatnonzero(v.reshape(v.shape[0], -1, P).any((0, 1)))
    if cols.size == 0:
        return 0, 0
    return max(-max_shift, -int(cols.min())), min(max_shift, P - 1 - int(cols.max()))


# --------------------------------------------------------------------------- training


@dataclass
class TemporalTrainConfig:
    """Hyperparameters of sequence-model training.

    The defaults are those of the measured runs in docs/models.md: the shipped ``pop-wavenet``
    (Adam lr 2e-3, batches of 8 crops of 128 steps, patience 6; held-out NLL 2.88 nats/step on pop)
    and the JSB models (batch 8; lr 2e-3 then 1e-3 for WaveNet-NADE, RNN-RBM with Adam-CD pretraining).
    ``moodsong train-seq`` shows and uses these same values.

    Parameters
    ----------
    epochs : int
        Upper bound; early stopping usually ends sooner.
    lr : float
        Adam learning rate.
    batch_size : int
        Pieces per update.
    max_len : int
        Random crop of each piece, in steps (long pieces at 16th-note steps).
    transpose : int
        Random transposition of each training piece by up to this many semitones (0 = off).
    patience : int
        Epochs without a better validation NLL before stopping.
    pretrain_epochs : int
        RNN-RBM only: epochs of plain-RBM pretraining of ``W`` and the biases (the paper's trick; it
        matters: docs/models.md). Other models ignore it.
    val_ais_chains, val_ais_betas : int
        RNN-RBM only: the quick AIS used for per-epoch validation.
    cond_lr : float
        Adam learning rate of the condition weights (parameters named ``cond*``); 0 = ``lr``. Condition
        weights added to a pretrained model start at zero and carry a weak signal, so they may want more.
    cond_dropout : float
        With per-piece conditions: share of training pieces whose condition is replaced by the uniform
        vector, so that the model also learns "no particular condition" (classifier-free guidance's trick).
    max_minutes : float
        Stop after this much training time (0 = no limit).
    """

    epochs: int = 200
    lr: float = 2e-3
    batch_size: int = 8
    max_len: int = 128
    transpose: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    patience: int = 6
    pretrain_epochs: int = 10
    val_ais_chains: int = 4
    val_ais_betas: int = 100
    max_minutes: float = 0.0
    cond_lr: float = 0.0
    cond_dropout: float = 0.0
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


def _optim_path(out: Path) -> Path:
    return out / "last.optim.pt"


def train_sequence_model(
    model_type: str,
    train: Sequence[np.ndarray],
    valid: Sequence[np.ndarray],
    out: str | os.PathLike,
    model_config: dict | None = None,
    tc: TemporalTrainConfig | None = None,
    *,
    source: str = "",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    amp: bool | None = None,
    conditions: Sequence[np.ndarray] | None = None,
    valid_conditions: Sequence[np.ndarray] | None = None,
    init_model: torch.nn.Module | None = None,
    metrics: Callable[[torch.nn.Module], dict] | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train an RNN-RBM or WaveNet-NADE on frame sequences; returns the best model and the history.

    ``OUT/model.{json,safetensors}`` is the best epoch by validation NLL;
    ``OUT/last.*`` the latest, which ``resume=True`` continues.

    Conditioned models (``cond_dim > 0``) take one condition vector per piece: ``conditions``
    for ``train`` and ``valid_conditions`` for ``valid`` (e.g. each clip's emotion label);
    ``tc.cond_dropout`` swaps a share of them for the uniform vector. ``init_model`` starts from
    a given model instead of a fresh one (fine-tuning; its validation NLL is recorded as epoch 0
    and is the one to beat). ``metrics(model)`` adds figures of its own to each epoch's row.

    Under ``torchrun`` the model is wrapped in DistributedDataParallel: each rank
    takes its share of every global batch of ``batch_size`` pieces, the loss is
    weighted so the averaged gradient is the global batch's per-frame mean, and
    rank 0 validates, logs and writes checkpoints (``OUT`` must be on a file
    system every rank sees for ``resume``). ``amp`` (default: on for WaveNet-NADE
    on CUDA) runs the forward pass in bfloat16 autocast; the RNN-RBM's free-energy
    differences stay in float32.
    """
    tc = tc if tc is not None else TemporalTrainConfig()
    out = Path(out)
    reuse_freed_memory()  # large activation buffers every step: 3x faster CPU updates (moodsong.training.allocator)
    ctx = _dist.current()
    log = ctx.log(log or (lambda s: None))
    progress = progress and ctx.is_main
    device = _dist.device_for(ctx, tc.device) if ctx.distributed else resolve_device(tc.device)
    if not train:
        raise MoodsongError("no training pieces")
    if conditions is not None and len(conditions) != len(train):
        raise MoodsongError(f"{len(conditions)} conditions for {len(train)} training pieces")
    if valid_conditions is not None and len(valid_conditions) != len(valid):
        raise MoodsongError(f"{len(valid_conditions)} conditions for {len(valid)} validation pieces")
    width = train[0].shape[1]
    mc = dict(model_config or {})
    mc.setdefault("num_visible", width)
    mc.setdefault("representation", dict(BENCHMARK_REPRESENTATION))
    if mc["num_visible"] != width:
        raise MoodsongError(f"frames are {width} wide but the model expects {mc['num_visible']}")
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(tc.seed)
    history: list[dict] = []
    start_epoch = 0
    last = out / "last"
    if resume and checkpoint_paths(last)[1].exists():
        model, meta, _ = load_checkpoint(last, map_location=device)
        if meta["model_type"] != model_type:
            raise MoodsongError(f"{out} holds a {meta['model_type']} run, not {model_type}")
        history = list(meta.get("history", []))
        start_epoch = int(meta.get("epoch", 0))
        log(f"resuming {model_type} from epoch {start_epoch}")
    else:
        if checkpoint_paths(out / "model")[1].exists() and not overwrite:
            raise MoodsongError(f"{out} already holds a model; pass --resume to continue it, --force to start over, "
                                "or another --out")
        if model_type not in TEMPORAL_MODELS:
            raise MoodsongError(f"unknown model {model_type!r} (choose from {', '.join(TEMPORAL_MODELS)})")
        if init_model is not None:
            if init_model.model_type != model_type or init_model.config.num_visible != width:
                raise MoodsongError(f"the starting model is a {init_model.model_type} over "
                                    f"{init_model.config.num_visible}-wide frames, not a {model_type} over {width}")
            model = init_model.to(device)
        else:
            model = build_model(model_type, mc).to(device)
    # the training loss as a module; DDP (gradient all-reduce) when distributed
    net = _dist.wrap_ddp(model, ctx, device)
    if ctx.distributed:
        torch.manual_seed(tc.seed + ctx.rank)  # different dropout masks per rank
    use_amp = (device.type == "cuda" and model_type == "wavenet") if amp is None else amp
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_cond = [any(part.startswith("cond") for part in n.split(".")) for n, _ in trainable]
    groups = [{"params": [p for (_, p), c in zip(trainable, is_cond) if not c]}]
    if tc.cond_lr and any(is_cond):
        groups.append({"params": [p for (_, p), c in zip(trainable, is_cond) if c], "lr": tc.cond_lr})
    else:
        groups[0]["params"] = [p for _, p in trainable]
    opt = torch.optim.Adam(groups, lr=tc.lr, weight_decay=tc.weight_decay)
    if resume and _optim_path(out).exists():
        opt.load_state_dict(torch.load(_optim_path(out), map_location=device, weights_only=True))
        # load_state_dict restores the saved learning rates: a resumed run must train at the one asked for now
        # (e.g. a second stage at a lower rate), so set them again
        for group, lr in zip(opt.param_groups, [tc.lr, tc.cond_lr or tc.lr]):
            group["lr"] = lr
    rep = model_representation(model)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{model_type}: {n_params} parameters, {len(train)} training / {len(valid)} validation pieces, device {device}")

    if model_type == "rnnrbm" and tc.pretrain_epochs and start_epoch == 0 and init_model is None:
        frames = torch.from_numpy(np.concatenate(train)).to(device)
        bar = tqdm(total=tc.pretrain_epochs, desc="RBM pretraining", unit="epoch", disable=not progress)
        model.pretrain(frames, epochs=tc.pretrain_epochs, generator=gen, progress=lambda: bar.update(1))
        bar.close()

    best = min((h["val_nll"] for h in history if "val_nll" in h), default=math.inf)
    since_best = 0
    if history:
        scored = (h for h in history if "val_nll" in h)
        best_epoch = min(scored, key=lambda h: h["val_nll"], default={"epoch": 0})["epoch"]
        since_best = history[-1]["epoch"] - best_epoch
    meta_base = {"train_config": tc.to_dict(), "source": source, "num_train_pieces": len(train),
                 "num_val_pieces": len(valid)}

    valid_cond = None if valid_conditions is None else torch.as_tensor(np.stack(valid_conditions), dtype=torch.float32)
    cond_dim = getattr(model.config, "cond_dim", 0)
    uniform = np.full(cond_dim, 1.0 / max(cond_dim, 1), np.float32)

    def validate() -> float:
        if not valid:
            return math.nan
        r = sequence_nll(model, valid, ais_chains=tc.val_ais_chains, ais_betas=tc.val_ais_betas, seed=tc.seed,
                         cond=valid_cond)
        return r["nll"]

    if init_model is not None and start_epoch == 0 and not history:
        # Epoch 0 is the starting model: training must beat it to replace it.
        best = ctx.broadcast_object(validate() if ctx.is_main else None)
        history.append({"epoch": 0, "val_nll": round(best, 5), **(metrics(model) if metrics and ctx.is_main else {})})
        if ctx.is_main:
            save_checkpoint(model, out / "model", epoch=0, history=history, best_val_nll=best, **meta_base)
        log(f"epoch 0 (starting model): validation NLL {best:.4f} nats/step")

    t_start = time.perf_counter()
    bar = tqdm(range(start_epoch, tc.epochs), initial=start_epoch, total=tc.epochs, desc=f"training {model_type}",
               unit="epoch", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(train))
        loss_sum, n_batches = torch.zeros((), device=device), 0  # summed on the device: no sync per batch
        for s in range(0, len(order), tc.batch_size):
            pieces, conds = [], []
            for i in order[s: s + tc.batch_size]:
                p = train[i]
                if p.shape[0] > tc.max_len:
                    o = int(rng.integers(0, p.shape[0] - tc.max_len + 1))
                    p = p[o: o + tc.max_len]
                if tc.transpose:
                    lo, hi = _safe_shift_range(p, rep, tc.transpose)
                    p = transpose_frames(p, int(rng.integers(lo, hi + 1)), rep)
                pieces.append(p)
                if conditions is not None:  # (no draw without conditions: unconditioned runs keep their stream)
                    dropped = tc.cond_dropout and rng.random() < tc.cond_dropout
                    conds.append(uniform if dropped else np.asarray(conditions[i], np.float32))
            scale = 1.0
            if ctx.distributed:  # every rank built the whole global batch (same crops); it trains on its share
                lo, hi = ctx.batch_slice(len(pieces))
                share = pieces[lo:hi]
                scale = ctx.world_size * sum(p.shape[0] for p in share) / sum(p.shape[0] for p in pieces)
                pieces = share or pieces[:1]  # an empty share still joins the all-reduce, with weight 0
                conds = (conds[lo:hi] or conds[:1]) if conds else conds
            v, mask = pad_batch(pieces, device)
            c = torch.from_numpy(np.stack(conds)).to(device) if conds else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = net(v, mask, gen, scale, c)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            loss_sum += loss.detach().float()
            n_batches += 1
        train_loss = float(ctx.all_reduce_(loss_sum)) / ctx.world_size
        val = ctx.broadcast_object(validate() if ctx.is_main else None)  # early stopping must agree on all ranks
        row = {"epoch": epoch + 1, "train_loss": round(train_loss / max(n_batches, 1), 5), "val_nll": round(val, 5),
               **(metrics(model) if metrics and ctx.is_main else {}), "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
        improved = val < best
        if improved:
            best, since_best = val, 0
            if ctx.is_main:
                save_checkpoint(model, out / "model", epoch=epoch + 1, history=history, best_val_nll=best, **meta_base)
        else:
            since_best += 1
        if ctx.is_main:
            save_checkpoint(model, last, epoch=epoch + 1, history=history, best_val_nll=best, **meta_base)
            with atomic_path(_optim_path(out)) as tmp:
                torch.save(opt.state_dict(), tmp)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_nll=f"{val:.3f}", best=f"{best:.3f}")
        log(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f}, validation NLL {val:.4f} nats/step"
            + (" (best)" if improved else ""))
        if since_best >= tc.patience:
            log(f"early stop: no better validation NLL for {tc.patience} epochs")
            break
        if ctx.broadcast_object(bool(tc.max_minutes and (time.perf_counter() - t_start) / 60 > tc.max_minutes)):
            log(f"time budget of {tc.max_minutes} min reached")
            break
    if not ctx.is_main:
        return model, history  # rank 0 holds the same weights and writes the files
    if not checkpoint_paths(out / "model")[1].exists():  # no validation data: keep the last epoch
        save_checkpoint(model, out / "model", epoch=len(history), history=history, **meta_base)
    best_model, _, _ = load_checkpoint(out / "model", map_location=device)
    return best_model, history
