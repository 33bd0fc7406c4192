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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..pianoroll import PianoRollConfig


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
    def from_dict(cls, d: dict) -> "RBMConfig":
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
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

    @staticmethod
    def _bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # Comparing uniforms is several times faster than torch.bernoulli with a generator on CPU;
        # comparing in place into the uniforms' own buffer saves a bool tensor and a cast.
        return torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype).lt_(p)

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
            h = self._bernoulli(torch.sigmoid(torch.addmm(self.b_hidden, v, self.W) * inv_t), generator)
            pv = torch.sigmoid(torch.addmm(self.b_visible, h, self.W.t()) * inv_t)
            v = self._bernoulli(pv, generator)
            if clamp_mask is not None:
                v = torch.where(clamp_mask, clamp_values, v)
        return v, pv

    # ------------------------------------------------------------------ scores

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) per row, in nats, shape ``(B,)``."""
        return -(v @ self.b_visible) - F.softplus(torch.addmm(self.b_hidden, v, self.W)).sum(1)

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

        With ``chains`` (persistent CD) the negative phase continues those
        chains instead of starting at the data; the caller keeps the returned
        sample as the new chain state. Hidden statistics use probabilities,
        which lowers the variance of the update at no cost in bias.

        ``v0_sparse`` is ``v0`` again as a sparse CSR tensor, for callers that
        reuse the same batches every epoch: music windows are ~3% ones, so the
        positive phase then costs in proportion to the notes, not the window.
        """
        W = self.W
        ph0 = torch.addmm(self.b_hidden, v0 if v0_sparse is None else v0_sparse, W).sigmoid_()
        h = self._bernoulli(ph0 if chains is None else self.hidden_probs(chains), generator)
        for step in range(k):
            vk = self._bernoulli(torch.addmm(self.b_visible, h, W.t()).sigmoid_(), generator)
            phk = torch.addmm(self.b_hidden, vk, W).sigmoid_()
            if step < k - 1:
                h = self._bernoulli(phk, generator)
        scale = lr / v0.shape[0]
        self.b_visible.add_(v0.sum(0) - vk.sum(0), alpha=scale)
        self.b_hidden.add_(ph0.sum(0) - phk.sum(0), alpha=scale)
        W.addmm_(v0.t(), ph0, alpha=scale).addmm_(vk.t(), phk, alpha=-scale)
        return vk

    # ------------------------------------------------------------------ convenience

    def extra_repr(self) -> str:
        c = self.config
        return f"num_timesteps={c.num_timesteps}, visible={c.num_visible}, hidden={c.num_hidden}"

    def log_partition_exact(self) -> float:
        """log Z by enumerating hidden states (only for tiny ``num_hidden``; used in tests)."""
        H = self.config.num_hidden
        if H > 20:
            raise ValueError("exact partition function needs num_hidden <= 20")
        hs = torch.tensor([[(i >> j) & 1 for j in range(H)] for i in range(2**H)], dtype=self.W.dtype)
        # log sum_h exp(h.b_h) prod_i (1 + exp(b_v_i + W_i.h))
        terms = hs @ self.b_hidden + F.softplus(torch.addmm(self.b_visible, hs, self.W.t())).sum(1)
        return float(torch.logsumexp(terms, 0))

