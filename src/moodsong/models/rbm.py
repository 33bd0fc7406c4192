"""A binary Restricted Boltzmann Machine over piano-roll windows.

The visible layer is a window of ``num_timesteps`` steps of the note-state
matrix, flattened to ``num_timesteps * 2 * num_pitches`` bits (2340 with the
demo's 15 steps and 78 pitches); the hidden layer has ``num_hidden`` binary
units (50 in the demo).

Energy:  E(v, h) = -v.b_visible - h.b_hidden - v^T W h
Free energy:  F(v) = -v.b_visible - sum_j softplus(b_hidden_j + (v W)_j)

Training is contrastive divergence (CD-k, or persistent CD), written as plain
tensor updates rather than autograd: the gradient of the log-likelihood is the
difference of two outer products, and computing it directly avoids building a
graph for every mini-batch.

The maths every binary RBM in moodsong shares lives here once, as functions of
``(W, b_visible, b_hidden)``: :func:`free_energy`, :func:`exact_log_partition`
and :func:`cd_statistics` (the positive and negative phases of CD-k). The RBM's
own update, the data-parallel update (:mod:`moodsong.training.distributed`), the
conditional RBM (biases per row) and the fused kernel's reference test all call
them; :mod:`moodsong.evaluation.ais` re-exports the first two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moodsong.representation.pianoroll import PianoRollConfig, canonicalize


def bernoulli(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary samples with probabilities ``p``, as ``p``'s dtype: ``1`` where a uniform draw is below ``p``.

    Comparing uniforms is several times faster than ``torch.bernoulli`` with a generator on CPU;
    comparing in place into the uniforms' own buffer saves a bool tensor and a cast.
    """
    return torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype).lt_(p)


def free_energy(v: torch.Tensor, W: torch.Tensor, b_visible: torch.Tensor, b_hidden: torch.Tensor) -> torch.Tensor:
    """``F(v) = -v.b_visible - sum_j softplus(b_hidden_j + (v W)_j)`` over the last axis, in nats.

    ``v`` has shape ``(..., V)``; the biases broadcast against it (one RBM, or one per row
    as in the conditional RBM and the RNN-RBM).
    """
    return -(v * b_visible).sum(-1) - F.softplus(v @ W + b_hidden).sum(-1)


def exact_log_partition(W: torch.Tensor, b_visible: torch.Tensor, b_hidden: torch.Tensor) -> torch.Tensor:
    """``log Z`` by enumerating the smaller layer (needs ``min(V, H) <= 20``; for tests and tiny models).

    Biases may be batched, ``(N, V)`` and ``(N, H)``, for ``N`` RBMs sharing ``W``; returns shape ``(N,)``,
    in nats, computed in float64.
    """
    V, H = W.shape
    bv = b_visible.reshape(-1, V).to(torch.float64)
    bh = b_hidden.reshape(-1, H).to(torch.float64)
    W = W.to(torch.float64)
    if min(V, H) > 20:
        raise ValueError("exact partition function needs a layer of at most 20 units")
    if H <= V:
        states = _all_states(H)  # (2^H, H)
        terms = states @ bh.t() + F.softplus(bv[:, None, :] + (states @ W.t())[None]).sum(-1).t()  # (2^H, N)
    else:
        states = _all_states(V)
        terms = states @ bv.t() + F.softplus(bh[:, None, :] + (states @ W)[None]).sum(-1).t()
    return torch.logsumexp(terms, 0)


def _all_states(n: int) -> torch.Tensor:
    idx = torch.arange(2**n)
    return ((idx[:, None] >> torch.arange(n)) & 1).to(torch.float64)


@torch.no_grad()
def cd_statistics(
    W: torch.Tensor,
    b_visible: torch.Tensor,
    b_hidden: torch.Tensor,
    v0: torch.Tensor,
    sample: Callable[[torch.Tensor], torch.Tensor],
    *,
    k: int = 1,
    chains: torch.Tensor | None = None,
    v0_sparse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The positive and negative phases of CD-k: ``(ph0, vk, phk)``.

    The log-likelihood gradient estimate, summed over the batch, is
    ``dW = v0^T ph0 - vk^T phk``, ``db_visible = sum(v0 - vk)``, ``db_hidden = sum(ph0 - phk)``;
    callers scale and apply it (in place in one process, after an all-reduce under DDP).
    Hidden statistics use probabilities, which lowers the variance of the update at no cost in bias.

    Parameters
    ----------
    b_visible, b_hidden : torch.Tensor
        ``(V,)`` and ``(H,)``, or ``(B, V)`` and ``(B, H)`` biases per row (conditional RBM).
    sample : callable
        ``p -> binary sample`` of the same shape: :func:`bernoulli` with a generator, or a
        stream that must match another implementation draw for draw (DDP, the fused kernel's test).
        Draws happen in the order ``h0, v1, h1, ..., vk``.
    chains : torch.Tensor, optional
        Persistent CD: the negative phase continues from these visible states instead of the data.
    v0_sparse : torch.Tensor, optional
        ``v0`` again as a sparse CSR tensor: music windows are ~3% ones, so the positive phase
        then costs in proportion to the notes, not the window.
    """
    ph0 = torch.addmm(b_hidden, v0 if v0_sparse is None else v0_sparse, W).sigmoid_()
    h = sample(ph0 if chains is None else torch.addmm(b_hidden, chains, W).sigmoid_())
    for step in range(k):
        vk = sample(torch.addmm(b_visible, h, W.t()).sigmoid_())
        phk = torch.addmm(b_hidden, vk, W).sigmoid_()
        if step < k - 1:
            h = sample(phk)
    return ph0, vk, phk


@dataclass
class RBMConfig:
    """Shape of an RBM music model. Defaults are the demo's."""

    num_timesteps: int = 15
    num_hidden: int = 50
    pianoroll: PianoRollConfig = field(default_factory=PianoRollConfig)

    @property
    def num_visible(self) -> int:
        return self.num_timesteps * self.pianoroll.width

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pianoroll"] = self.pianoroll.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RBMConfig:
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        if "pianoroll" in d:
            kw["pianoroll"] = PianoRollConfig.from_dict(d["pianoroll"])
        return cls(**kw)


class RBM(nn.Module):
    """Bernoulli-Bernoulli RBM.

    Parameters are ``W`` (visible x hidden), ``b_visible`` and ``b_hidden``.
    All sampling methods take an optional ``torch.Generator`` so results are
    reproducible without touching global RNG state.
    """

    model_type = "rbm"

    def __init__(self, config: RBMConfig | None = None):
        super().__init__()
        # A fresh config per model: a default instance in the signature would be shared by every RBM.
        self.config = config = config if config is not None else RBMConfig()
        V, H = config.num_visible, config.num_hidden
        # Small random weights as in Hinton's practical guide; the demo used N(0, 0.01) too.
        self.W = nn.Parameter(torch.randn(V, H) * 0.01, requires_grad=False)
        self.b_visible = nn.Parameter(torch.zeros(V), requires_grad=False)
        self.b_hidden = nn.Parameter(torch.zeros(H), requires_grad=False)

    # ------------------------------------------------------------------ conditionals

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h=1 | v), shape ``(B, H)``."""
        return torch.sigmoid(torch.addmm(self.b_hidden, v, self.W))

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """p(v=1 | h), shape ``(B, V)``."""
        return torch.sigmoid(torch.addmm(self.b_visible, h, self.W.t()))

    def gibbs(
        self,
        v: torch.Tensor,
        steps: int = 1,
        *,
        generator: torch.Generator | None = None,
        clamp_mask: torch.Tensor | None = None,
        clamp_values: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``steps`` full Gibbs sweeps v -> h -> v.

        Visible units where ``clamp_mask`` is true are held at ``clamp_values``
        (used to continue a piece from its last steps). ``temperature`` > 1
        flattens the conditionals. Returns the last visible sample and its
        probabilities.
        """
        pv = v
        inv_t = 1.0 / temperature
        for _ in range(steps):
            h = bernoulli(torch.sigmoid(torch.addmm(self.b_hidden, v, self.W) * inv_t), generator)
            pv = torch.sigmoid(torch.addmm(self.b_visible, h, self.W.t()) * inv_t)
            v = bernoulli(pv, generator)
            if clamp_mask is not None:
                v = torch.where(clamp_mask, clamp_values, v)
        return v, pv

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate_roll(
        self,
        num_steps: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        primer: np.ndarray | None = None,
        overlap: int | None = None,
        burn_in: int = 200,
        max_tries: int = 8,
        final: str = "mode",
    ) -> np.ndarray:
        """A piece of ``num_steps`` steps (``uint8`` note-state matrix), grown window by window.

        The demo ran one Gibbs step from all-zeros, which mostly returned noise or
        silence; here every window starts from the model's own visible marginals,
        runs ``burn_in`` sweeps, and is sampled with its first ``overlap`` steps
        clamped to the end of the piece so far, so fragments join without seams.

        Parameters
        ----------
        overlap : int
            Steps of the previous window each new window is conditioned on
            (default: half a window).
        primer : ndarray, optional
            A note-state matrix the piece continues from (its last steps are kept as the start).
        max_tries : int
            A window that comes out silent is resampled up to this many times.
        final : {"mode", "sample"}
            ``mode`` keeps the notes whose probability in the last sweep is over
            one half, which drops the scattered one-step notes a raw sample has;
            ``sample`` keeps the raw Bernoulli sample (the demo's behaviour).
        """
        T = self.config.num_timesteps
        W = self.config.pianoroll.width
        overlap = T // 2 if overlap is None else overlap
        if not 0 <= overlap < T:
            raise ValueError(f"overlap must be in [0, {T})")
        device = self.W.device
        if primer is not None and primer.shape[0] > 0:
            piece = torch.as_tensor(np.asarray(primer[-T:], np.float32), device=device)
        else:
            piece = torch.zeros((0, W), device=device)
        start_len = piece.shape[0]
        while piece.shape[0] - start_len < num_steps:
            ctx = min(overlap, piece.shape[0])
            mask = torch.zeros((T, W), dtype=torch.bool, device=device)
            values = torch.zeros((T, W), device=device)
            if ctx:
                mask[:ctx] = True
                values[:ctx] = piece[-ctx:]
            for _ in range(max_tries):
                init = bernoulli(torch.sigmoid(self.b_visible), generator).view(T, W)
                init = torch.where(mask, values, init).view(1, -1)
                v, pv = self.gibbs(init, burn_in, generator=generator, temperature=temperature,
                                   clamp_mask=mask.view(1, -1), clamp_values=values.view(1, -1))
                if final == "mode":
                    v = torch.where(mask.view(1, -1), values.view(1, -1), (pv > 0.5).to(v.dtype))
                new = v.view(T, W)[ctx:]
                if new.sum() > 0:
                    break
            piece = torch.cat([piece, new])
        out = piece[start_len : start_len + num_steps].cpu().numpy()
        return canonicalize(out)

    # ------------------------------------------------------------------ scores

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) per row, in nats, shape ``(B,)`` (:func:`free_energy`)."""
        return free_energy(v, self.W, self.b_visible, self.b_hidden)

    def pseudo_log_likelihood(self, v: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Exact pseudo-log-likelihood per row: sum_i log p(v_i | v_-i), in nats, shape ``(B,)``.

        Flipping bit i shifts the hidden pre-activation by +-W_i, so all
        ``V`` conditionals of a row come from one ``(V, H)`` tensor instead of
        ``V`` free-energy evaluations.
        """
        pre = torch.addmm(self.b_hidden, v, self.W)  # (B, H)
        base = F.softplus(pre).sum(1)  # (B,)
        out = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
        for i in range(0, self.W.shape[0], chunk):
            Wc = self.W[i : i + chunk]  # (c, H)
            vc = v[:, i : i + chunk]  # (B, c)
            sign = 1 - 2 * vc  # +1 where the bit is 0 (flip turns it on), -1 where it is 1
            flipped = F.softplus(pre[:, None, :] + sign[:, :, None] * Wc[None]).sum(2)  # (B, c)
            # F(v_flip) - F(v) = -sign*b_i - (softplus sum of flipped - base)
            delta = -sign * self.b_visible[i : i + chunk] - (flipped - base[:, None])
            out += F.logsigmoid(delta).sum(1)
        return out

    def reconstruction_error(self, v: torch.Tensor) -> torch.Tensor:
        """Mean squared error of a one-step mean-field reconstruction, per row."""
        return ((self.visible_probs(self.hidden_probs(v)) - v) ** 2).mean(1)

    # ------------------------------------------------------------------ learning

    @torch.no_grad()
    def cd_update(
        self,
        v0: torch.Tensor,
        lr: float,
        *,
        k: int = 1,
        chains: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        v0_sparse: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One contrastive-divergence update from the data batch ``v0``; returns the negative sample.

        The statistics come from :func:`cd_statistics`. With ``chains`` (persistent CD) the
        negative phase continues those chains instead of starting at the data; the caller
        keeps the returned sample as the new chain state. ``v0_sparse`` is ``v0`` as a sparse
        CSR tensor, for callers that reuse the same batches every epoch.
        """
        ph0, vk, phk = cd_statistics(self.W, self.b_visible, self.b_hidden, v0, lambda p: bernoulli(p, generator),
                                     k=k, chains=chains, v0_sparse=v0_sparse)
        scale = lr / v0.shape[0]
        self.b_visible.add_(v0.sum(0) - vk.sum(0), alpha=scale)
        self.b_hidden.add_(ph0.sum(0) - phk.sum(0), alpha=scale)
        self.W.addmm_(v0.t(), ph0, alpha=scale).addmm_(vk.t(), phk, alpha=-scale)
        return vk

    # ------------------------------------------------------------------ convenience

    def extra_repr(self) -> str:
        c = self.config
        return f"num_timesteps={c.num_timesteps}, visible={c.num_visible}, hidden={c.num_hidden}"

    def log_partition_exact(self) -> float:
        """log Z in nats by enumeration (:func:`exact_log_partition`; only for tiny models, as in tests)."""
        return float(exact_log_partition(self.W, self.b_visible, self.b_hidden)[0])

