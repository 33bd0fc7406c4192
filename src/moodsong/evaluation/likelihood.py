"""Benchmark-grade evaluation of sequence models on polyphonic-music data.

Two figures, as in Boulanger-Lewandowski et al. (2012):

**Negative log-likelihood per time step** (nats), ``-(1/N) sum_t log p(v_t | v_<t)``
over all ``N`` frames of the split (the standard JSB/Nottingham/MuseData figure).

- WaveNet-NADE: exact (the NADE output is normalised by construction).
- RNN-RBM: ``log p(v_t | v_<t) = -F_t(v_t) - log Z_t``; each step's ``log Z_t`` is
  estimated by annealed importance sampling (:mod:`moodsong.evaluation.ais`) with
  ``ais_chains`` chains and ``ais_betas`` inverse temperatures (defaults 100 and
  1000, Salakhutdinov & Murray's spacing). The reported ``nll_stderr`` is the
  standard error of the total, ``sqrt(sum_t se_t^2) / N``, from each step's
  delta-method error.
- plain RBM over windows (:class:`moodsong.models.rbm.RBM`): one ``log Z`` for the
  whole model; non-overlapping windows of its length, NLL divided by the steps.

**Expected frame-level accuracy** (Bay, Ehmann & Downie 2009) of next-step
prediction: for each frame, ``samples`` draws from ``p(v_t | v_<t)`` given the
true past are compared with the true frame, and
``ACC = sum TP / (sum TP + sum FP + sum FN)`` over every frame and draw. RBM
draws use ``gibbs_steps`` Gibbs sweeps started at the previous true frame.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from moodsong.corpora.corpus import load_polyphonic, sequences_to_pianoroll, sequences_to_rolls
from moodsong.errors import MoodsongError
from moodsong.evaluation.ais import ais_log_partition, free_energy
from moodsong.models.frames import BENCHMARK_REPRESENTATION
from moodsong.representation.pianoroll import PianoRollConfig, song_windows


def model_representation(model) -> dict:
    """The frame representation a model was trained on."""
    rep = getattr(model.config, "representation", None)
    if rep:
        return dict(rep)
    pr = getattr(model.config, "pianoroll", None)
    if pr is not None:  # the plain RBM over note-state windows
        return {"kind": "note-state", **pr.to_dict()}
    return dict(BENCHMARK_REPRESENTATION)


def benchmark_frames(seqs: Sequence, representation: dict) -> list[np.ndarray]:
    """Benchmark sequences (tuples of MIDI pitches per step) as float32 frames in ``representation``."""
    rep = representation
    if rep.get("kind", "keys") == "keys":
        return sequences_to_pianoroll(seqs, low=rep["lowest_pitch"], num_pitches=rep["num_pitches"])
    config = PianoRollConfig.from_dict(rep)
    return [r.astype(np.float32) for r in sequences_to_rolls(seqs, config, steps_per_frame=1)]


def load_benchmark(
    path: str | os.PathLike, split: str, representation: dict = BENCHMARK_REPRESENTATION
) -> list[np.ndarray]:
    """One split of a benchmark pickle/JSON as frames; raises MoodsongError on an unknown or empty split."""
    data = load_polyphonic(path)
    if split not in data:
        raise MoodsongError(f"unknown split {split!r} (use train, valid or test)")
    if not data[split]:
        raise MoodsongError(f"{path}: split {split!r} is empty")
    return benchmark_frames(data[split], representation)


def pad_batch(seqs: Sequence[np.ndarray], device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad sequences ``(T_i, V)`` to ``(B, T_max, V)`` with a ``(B, T_max)`` mask of real frames."""
    T = max(s.shape[0] for s in seqs)
    V = seqs[0].shape[1]
    v = np.zeros((len(seqs), T, V), np.float32)
    mask = np.zeros((len(seqs), T), bool)
    for i, s in enumerate(seqs):
        v[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return torch.from_numpy(v).to(device), torch.from_numpy(mask).to(device)


def _batches(seqs, batch_size):
    """Groups of ``(indices, sequences)``; sorting by length keeps padding small."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i].shape[0])
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        yield idx, [seqs[i] for i in idx]


def _batch_cond(cond, idx, n_seqs, B, dev):
    """A batch's condition rows: ``cond`` is one vector for every sequence, or ``(n_seqs, C)``, one per sequence."""
    if cond is None:
        return None
    cond = torch.as_tensor(cond).to(dev)
    if cond.dim() == 2 and cond.shape[0] == n_seqs:
        return cond[list(idx)]
    return cond.expand(B, -1)


def _model_dtype(model):
    return next(model.parameters()).dtype


@torch.no_grad()
def sequence_nll(model, seqs: Sequence[np.ndarray], *, ais_chains: int = 100, ais_betas: int = 1000,
                 batch_size: int = 16, cond: torch.Tensor | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Negative log-likelihood per frame of ``seqs`` (nats), with its standard error and how it was computed.

    ``cond`` (conditioned models) is one condition vector for every sequence, or ``(len(seqs), cond_dim)``:
    each sequence's own (e.g. its emotion label).
    """
    was_training = model.training
    model.eval()
    try:
        return _sequence_nll(model, seqs, ais_chains, ais_betas, batch_size, cond, seed, progress)
    finally:
        model.train(was_training)


def _sequence_nll(model, seqs, ais_chains, ais_betas, batch_size, cond, seed, progress):
    dev = next(model.parameters()).device
    kind = model.model_type
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    total, var, steps = 0.0, 0.0, 0
    if kind == "rbm":
        return _window_rbm_nll(model, seqs, ais_chains, ais_betas, gen)
    bar = tqdm(total=sum(s.shape[0] for s in seqs), desc="log-likelihood", unit="step", disable=not progress)
    for idx, group in _batches(seqs, batch_size):
        v, mask = pad_batch(group, dev)
        v = v.to(_model_dtype(model))
        c = _batch_cond(cond, idx, len(seqs), v.shape[0], dev)
        if kind == "wavenet":
            total -= float(model.log_prob(v, mask, c).sum())
        elif kind == "rnnrbm":
            fe, bv, bh = model.free_energies(v, c)
            m = mask
            res = ais_log_partition(model.W, bv[m], bh[m], num_chains=ais_chains, betas=ais_betas, generator=gen)
            total += float((fe[m] + res.log_z).sum())
            var += float((res.log_z_stderr ** 2).sum())
        else:
            raise MoodsongError(f"cannot evaluate a model of type {kind!r}")
        n = int(mask.sum())
        steps += n
        bar.update(n)
    bar.close()
    out = {"nll": total / steps, "num_steps": steps}
    if kind == "rnnrbm":
        out.update(nll_stderr=math.sqrt(var) / steps,
                   method=f"AIS per step: {ais_chains} chains x {ais_betas} inverse temperatures")
    else:
        out.update(nll_stderr=0.0, method="exact (autoregressive NADE output)")
    return out


def _window_rbm_nll(model, seqs, ais_chains, ais_betas, gen):
    T = model.config.num_timesteps
    wins = song_windows(seqs, T)
    if not wins:
        raise MoodsongError(f"no sequence is at least {T} steps long (the RBM's window)")
    v = torch.from_numpy(np.concatenate(wins)).to(model.W.device, model.W.dtype)
    res = ais_log_partition(model.W, model.b_visible, model.b_hidden, num_chains=ais_chains, betas=ais_betas,
                            generator=gen)
    fe = free_energy(v, model.W, model.b_visible, model.b_hidden)
    steps = v.shape[0] * T
    return {"nll": float((fe.sum() + v.shape[0] * res.log_z[0]) / steps), "num_steps": steps,
            "nll_stderr": float(res.log_z_stderr[0]) / T,
            "method": f"AIS for one log Z: {ais_chains} chains x {ais_betas} inverse temperatures; "
                      f"windows of {T} steps"}


@torch.no_grad()
def frame_accuracy(model, seqs: Sequence[np.ndarray], *, samples: int = 10, gibbs_steps: int = 25, batch_size: int = 16,
                   cond: torch.Tensor | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Expected frame-level accuracy of next-step prediction (Bay et al. 2009); see the module docstring."""
    kind = model.model_type
    if kind not in ("wavenet", "rnnrbm"):
        return {"accuracy": None}
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    tp = fp = fn = 0.0
    bar = tqdm(total=sum(s.shape[0] for s in seqs), desc="accuracy", unit="step", disable=not progress)
    try:
        for idx, group in _batches(seqs, batch_size):
            v, mask = pad_batch(group, dev)
            v = v.to(_model_dtype(model))
            c = _batch_cond(cond, idx, len(seqs), v.shape[0], dev)
            truth = v[mask]  # (n, V)
            if kind == "wavenet":
                b, hc = model.nade_biases(v, c)
                b, hc = b[mask], hc[mask]
                pred = torch.stack([model.nade_sample(b, hc, generator=gen) for _ in range(samples)], 1)
            else:
                _, bv, bh = model.free_energies(v, c)
                prev = torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], 1)[mask]
                start = prev[:, None].expand(-1, samples, -1).contiguous()
                pred, _ = model.gibbs(start, bv[mask][:, None], bh[mask][:, None], gibbs_steps, generator=gen)
            t = truth[:, None]
            tp += float((pred * t).sum())
            fp += float((pred * (1 - t)).sum())
            fn += float(((1 - pred) * t).sum())
            bar.update(int(mask.sum()))
    finally:
        bar.close()
        model.train(was_training)
    denom = tp + fp + fn
    return {"accuracy": tp / denom if denom else float("nan"), "samples": samples,
            "gibbs_steps": gibbs_steps if kind == "rnnrbm" else None}


def evaluate_model(model, seqs: Sequence[np.ndarray], *, ais_chains: int = 100, ais_betas: int = 1000,
                   samples: int = 10, gibbs_steps: int = 25, seed: int = 0, cond: torch.Tensor | None = None,
                   progress: bool = False) -> dict:
    """Both figures for one model on one split: ``{"nll", "nll_stderr", "num_steps", "method", "accuracy", ...}``."""
    out = sequence_nll(model, seqs, ais_chains=ais_chains, ais_betas=ais_betas, cond=cond, seed=seed, progress=progress)
    out.update(frame_accuracy(model, seqs, samples=samples, gibbs_steps=gibbs_steps, cond=cond, seed=seed,
                              progress=progress))
    out["model_type"] = model.model_type
    return out
