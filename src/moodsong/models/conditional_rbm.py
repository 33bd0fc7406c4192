"""An emotion-conditional RBM over piano-roll windows.

Same bipartite model as the demo RBM (binary visible window of
``num_timesteps`` steps x ``2 * num_pitches`` bits, binary hidden layer), but
both bias vectors are linear functions of a condition vector ``c`` (here the
4 Russell quadrants, one-hot or soft):

    E(v, h; c) = -v.(b_v + c A) - h.(b_h + c B) - v^T W h

So the condition shifts which notes are likely on their own (``A``: e.g. a
minor third over the tonic, a low register, sparse onsets) and which hidden
"patterns" switch on (``B``), while ``W`` is shared by all emotions, so the
weakly labelled and the hand-labelled data train one set of patterns. This is
the conditional RBM of Taylor & Hinton (2007) with a label instead of past
frames as the conditioning input.

Training is CD-k with conditional negatives: the chain runs with the data's own
condition, so the gradient of ``A`` is ``c^T (v_data - v_model)`` and of ``B``
``c^T (h_data - h_model)``. Labels may be soft (rows of probabilities), which
is how weak labels from the music-emotion estimator enter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from moodsong.models.rbm import RBMConfig, cd_statistics, free_energy


@dataclass
class ConditionalRBMConfig(RBMConfig):
    """Shape of a conditional RBM music model: an :class:`RBMConfig` plus the condition size."""

    num_timesteps: int = 16
    num_hidden: int = 128
    num_conditions: int = 4


class ConditionalRBM(nn.Module):
    """Bernoulli RBM whose visible and hidden biases depend on a condition vector.

    Parameters are ``W`` (visible x hidden), ``b_visible``, ``b_hidden``,
    ``A`` (conditions x visible) and ``B`` (conditions x hidden). Sampling
    methods take an optional ``torch.Generator`` for reproducibility.
    """

    model_type = "conditional_rbm"

    def __init__(self, config: ConditionalRBMConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else ConditionalRBMConfig()
        V, H, C = config.num_visible, config.num_hidden, config.num_conditions
        self.W = nn.Parameter(torch.randn(V, H) * 0.01, requires_grad=False)
        self.b_visible = nn.Parameter(torch.zeros(V), requires_grad=False)
        self.b_hidden = nn.Parameter(torch.zeros(H), requires_grad=False)
        self.A = nn.Parameter(torch.zeros(C, V), requires_grad=False)
        self.B = nn.Parameter(torch.zeros(C, H), requires_grad=False)

    # ------------------------------------------------------------------ conditionals

    def _biases(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row visible and hidden biases for conditions ``c`` of shape ``(B, C)``."""
        return self.b_visible + c @ self.A, self.b_hidden + c @ self.B

    def hidden_probs(self, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """p(h=1 | v, c), shape ``(B, H)``."""
        return torch.sigmoid(self.b_hidden + c @ self.B + v @ self.W)

    def visible_probs(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """p(v=1 | h, c), shape ``(B, V)``."""
        return torch.sigmoid(self.b_visible + c @ self.A + h @ self.W.t())

    @torch.no_grad()
    def gibbs(
        self,
        v: torch.Tensor,
        c: torch.Tensor,
        steps: int = 1,
        *,
        generator: torch.Generator | None = None,
        clamp_mask: torch.Tensor | None = None,
        clamp_values: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``steps`` Gibbs sweeps v -> h -> v under condition ``c``.

        Visible units where ``clamp_mask`` is true stay at ``clamp_values``
        (used to continue a piece from the end of the previous window).
        Returns the last visible sample and its probabilities.
        """
        bv, bh = self._biases(c)
        inv_t = 1.0 / temperature
        pv = v
        for _ in range(steps):
            h = torch.bernoulli(torch.sigmoid((bh + v @ self.W) * inv_t), generator=generator)
            pv = torch.sigmoid((bv + h @ self.W.t()) * inv_t)
            v = torch.bernoulli(pv, generator=generator)
            if clamp_mask is not None:
                v = torch.where(clamp_mask, clamp_values, v)
        return v, pv

    # ------------------------------------------------------------------ scores

    def free_energy(self, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """F(v | c) per row in nats, shape ``(B,)``; lower is more likely under ``c`` (:func:`~.rbm.free_energy`)."""
        bv, bh = self._biases(c)
        return free_energy(v, self.W, bv, bh)

    def reconstruction_error(self, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Mean squared error of a one-step mean-field reconstruction, per row."""
        return ((self.visible_probs(self.hidden_probs(v, c), c) - v) ** 2).mean(1)

    # ------------------------------------------------------------------ learning

    @torch.no_grad()
    def cd_update(
        self,
        v0: torch.Tensor,
        c: torch.Tensor,
        lr: float,
        *,
        k: int = 1,
        weight_decay: float = 1e-4,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One CD-k update from data ``v0`` with conditions ``c``; returns the negative sample.

        The statistics are the plain RBM's (:func:`~.rbm.cd_statistics`) with each row's own biases.
        """
        bv, bh = self._biases(c)
        ph0, vk, phk = cd_statistics(self.W, bv, bh, v0, lambda p: torch.bernoulli(p, generator=generator), k=k)
        s = lr / v0.shape[0]
        dv, dh = v0 - vk, ph0 - phk
        self.W.mul_(1 - lr * weight_decay).addmm_(v0.t(), ph0, alpha=s).addmm_(vk.t(), phk, alpha=-s)
        self.b_visible.add_(dv.sum(0), alpha=s)
        self.b_hidden.add_(dh.sum(0), alpha=s)
        self.A.addmm_(c.t(), dv, alpha=s)
        self.B.addmm_(c.t(), dh, alpha=s)
        return vk


def condition_vector(valence: float, arousal: float, sharpness: float = 4.0) -> np.ndarray:
    """Soft quadrant weights for a (valence, arousal) target in [-1, 1]^2.

    A point deep in a quadrant gives nearly one-hot weights; a point near an
    axis blends the neighbouring quadrants, so the model interpolates.
    """
    centres = np.array([[0.6, 0.6], [-0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]])
    d2 = ((centres - np.array([valence, arousal])) ** 2).sum(1)
    w = np.exp(-sharpness * d2)
    return w / w.sum()


def fit_conditional_rbm(
    windows: np.ndarray,
    conditions: np.ndarray,
    config: ConditionalRBMConfig,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    k: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ConditionalRBM, list[float]]:
    """Train a conditional RBM with CD-k; returns the model and the reconstruction error per epoch.

    Parameters
    ----------
    windows : numpy.ndarray
        ``(N, num_timesteps * width)`` binary windows (flattened note-state matrices).
    conditions : numpy.ndarray
        ``(N, num_conditions)`` one-hot or soft labels (rows sum to 1).
    """
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ConditionalRBM(config)
    X = torch.as_tensor(windows, dtype=torch.float32)
    C = torch.as_tensor(conditions, dtype=torch.float32)
    # Visible biases start at the data's log-odds (Hinton's practical guide): faster, steadier start.
    p = X.mean(0).clamp(1e-3, 1 - 1e-3)
    model.b_visible.copy_(torch.log(p / (1 - p)))
    history = []
    n = X.shape[0]
    bar = tqdm(range(epochs), desc="conditional RBM", unit="epoch", disable=not progress)
    for epoch in bar:
        perm = torch.randperm(n, generator=g)
        rate = lr * (1.0 - 0.8 * epoch / max(epochs - 1, 1))  # linear decay to 20 %
        errs = []
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            vk = model.cd_update(X[idx], C[idx], rate, k=k, generator=g)
            errs.append(float(((X[idx] - vk) ** 2).mean()))
        history.append(float(np.mean(errs)))
        bar.set_postfix(recon=f"{history[-1]:.4f}")
    return model, history


@torch.no_grad()
def sample_roll(
    model: ConditionalRBM,
    condition: np.ndarray,
    num_steps: int,
    *,
    overlap: int | None = None,
    gibbs_steps: int = 60,
    temperature: float = 1.0,
    strength: float = 1.0,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Sample a note-state matrix of ``num_steps`` steps under one condition vector.

    Windows are chained: each new window keeps its first ``overlap`` steps
    clamped to the end of the previous one, so the piece continues instead of
    restarting every window (the classic demo concatenated independent windows).

    ``strength`` scales the condition (like guidance in conditional diffusion
    models): 1 samples the learned conditional, larger values exaggerate what
    distinguishes the emotions.

    The written matrix takes the sampled ``struck`` bits, but the ``held`` bits
    from the final conditional probabilities (held where p > 0.5, or struck):
    independently sampled held bits flicker, and every gap would read as a new
    note (several times EMOPIA's onset rate).

    Returns
    -------
    numpy.ndarray
        ``uint8`` matrix of shape ``(num_steps, width)``.
    """
    cfg = model.config
    T, Wd = cfg.num_timesteps, cfg.pianoroll.width
    overlap = T // 2 if overlap is None else overlap
    if not 0 <= overlap < T:
        raise ValueError("overlap must be in 0..num_timesteps-1")
    c = strength * torch.as_tensor(np.asarray(condition, np.float32))[None]
    bv, _ = model._biases(c)
    P = cfg.pianoroll.num_pitches
    out = []
    prev: torch.Tensor | None = None
    total = 0
    while total < num_steps:
        v = torch.bernoulli(torch.sigmoid(bv), generator=generator)
        mask = vals = None
        if prev is not None and overlap:
            mask = torch.zeros(1, T * Wd, dtype=torch.bool)
            mask[:, : overlap * Wd] = True
            vals = torch.zeros(1, T * Wd)
            vals[:, : overlap * Wd] = prev[:, (T - overlap) * Wd :]
            v = torch.where(mask, vals, v)
        v, pv = model.gibbs(v, c, gibbs_steps, generator=generator, clamp_mask=mask, clamp_values=vals,
                            temperature=temperature)
        clean = v.view(T, Wd).clone()
        clean[:, :P] = ((pv.view(T, Wd)[:, :P] > 0.5) | (clean[:, P:] > 0)).float()
        new = clean if prev is None else clean[overlap:]
        out.append(new)
        total += new.shape[0]
        prev = clean.reshape(1, -1)
    return torch.cat(out)[:num_steps].numpy().astype(np.uint8)
