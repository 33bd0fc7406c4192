"""The RNN-RBM (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012).

A piece is a sequence of binary frames ``v_1 .. v_T`` (any width: 88 keys for
the benchmark, ``2 * 78`` held|struck bits for moodsong's note-state matrix).
A recurrent network reads the past frames; its state ``u_{t-1}`` sets the biases
of an RBM that models frame ``t`` jointly over all pitches:

    b_visible_t = b_visible + W_uv u_{t-1}        b_hidden_t = b_hidden + W_uh u_{t-1}
    p(v_t | v_<t) = RBM(W, b_visible_t, b_hidden_t)

Training: for each frame, ``k`` Gibbs steps from the data give a negative
sample ``v~_t`` (CD-k); the loss ``F_t(v_t) - F_t(v~_t)`` (``F_t`` the free energy
of step ``t``'s RBM) has the CD gradient for ``W`` and the biases, and autograd
carries the bias gradients back through the recurrent network.

The paper's pretraining trick (train ``W`` and the static biases as a plain RBM
on single frames first) is :meth:`RNNRBM.pretrain`. ``cond`` (an emotion vector,
e.g. valence/arousal) is fed to the RNN and added to both bias vectors.

The log-likelihood needs each step's partition function: see
:func:`moodsong.evaluation.ais.ais_log_partition` and :func:`moodsong.evaluation.likelihood.evaluate_model`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moodsong.models.frames import FrameConfigMixin, FrameModelMixin
from moodsong.models.rbm import free_energy


@dataclass
class RNNRBMConfig(FrameConfigMixin):
    """Hyperparameters.

    Parameters
    ----------
    num_visible : int
        Frame width (bits per time step).
    num_hidden : int
        RBM hidden units.
    num_recurrent : int
        Recurrent state size.
    cell : str
        ``"gru"``, ``"lstm"`` or ``"rnn"`` (the paper's plain tanh RNN).
    cd_k : int
        Gibbs steps per negative sample in training.
    cond_dim : int
        Size of the optional conditioning (emotion) vector; 0 for none.
    representation : dict
        How frames map to music (see :mod:`moodsong.temporal`), stored for generation.
    """

    num_visible: int = 88
    num_hidden: int = 150
    num_recurrent: int = 100
    cell: str = "gru"
    cd_k: int = 15
    cond_dim: int = 0
    representation: dict | None = None



_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class RNNRBM(FrameModelMixin, nn.Module):
    """RNN-RBM over binary frames; see the module docstring.

    Tensors of frames have shape ``(B, T, V)``; ``cond`` is ``(B, cond_dim)`` or ``(B, T, cond_dim)``.
    """

    model_type = "rnnrbm"

    def __init__(self, config: RNNRBMConfig | None = None):
        super().__init__()
        self.config = c = config if config is not None else RNNRBMConfig()
        if c.cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}")
        V, H, R = c.num_visible, c.num_hidden, c.num_recurrent
        self.W = nn.Parameter(torch.randn(V, H) * 0.01)
        self.b_visible = nn.Parameter(torch.zeros(V))
        self.b_hidden = nn.Parameter(torch.zeros(H))
        self.rnn = _CELLS[c.cell](V + c.cond_dim, R, batch_first=True)
        self.W_uv = nn.Linear(R, V, bias=False)
        self.W_uh = nn.Linear(R, H, bias=False)
        nn.init.normal_(self.W_uv.weight, std=0.01)
        nn.init.normal_(self.W_uh.weight, std=0.01)
        if c.cond_dim:
            self.cond_v = nn.Linear(c.cond_dim, V, bias=False)
            self.cond_h = nn.Linear(c.cond_dim, H, bias=False)

    # ------------------------------------------------------------------ biases per step

    def _cond_seq(self, cond, B, T, device):
        if not self.config.cond_dim:
            return None
        if cond is None:
            return torch.zeros(B, T, self.config.cond_dim, device=device, dtype=self.W.dtype)
        cond = cond.to(device=device, dtype=self.W.dtype)
        return cond[:, None].expand(B, T, -1) if cond.dim() == 2 else cond

    def step_biases(self, v: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step RBM biases ``(b_visible_t, b_hidden_t)``, shapes ``(B, T, V)`` and ``(B, T, H)``.

        Step ``t``'s biases depend on frames ``0 .. t-1`` only (and ``cond``).
        """
        B, T, _ = v.shape
        c = self._cond_seq(cond, B, T, v.device)
        # the RNN reads the previous frame at each step: shift right by one
        x = torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], 1)
        if c is not None:
            x = torch.cat([x, c], -1)
        u, _ = self.rnn(x)  # u[:, t] has read (0, v_0 .. v_{t-1}): exactly the past of step t
        bv = self.b_visible + self.W_uv(u)
        bh = self.b_hidden + self.W_uh(u)
        if c is not None:
            bv = bv + self.cond_v(c)
            bh = bh + self.cond_h(c)
        return bv, bh

    # ------------------------------------------------------------------ sampling inside one RBM

    @torch.no_grad()
    def gibbs(self, v, bv, bh, steps, *, temperature=1.0, generator=None):
        """``steps`` Gibbs sweeps in the RBMs with biases ``bv``/``bh`` (any leading shape), from ``v``."""
        inv_t = 1.0 / temperature
        pv = v
        for _ in range(steps):
            h = torch.bernoulli(torch.sigmoid((v @ self.W + bh) * inv_t), generator=generator)
            pv = torch.sigmoid((h @ self.W.t() + bv) * inv_t)
            v = torch.bernoulli(pv, generator=generator)
        return v, pv

    # ------------------------------------------------------------------ training objective

    def cd_loss(self, v: torch.Tensor, mask: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean CD-k surrogate loss over the frames where ``mask`` is true (``(B, T)``).

        Its gradient is the CD estimate of the negative log-likelihood gradient.
        """
        bv, bh = self.step_biases(v, cond)
        neg, _ = self.gibbs(v, bv.detach(), bh.detach(), self.config.cd_k, generator=generator)
        diff = free_energy(v, self.W, bv, bh) - free_energy(neg, self.W, bv, bh)
        if mask is None:
            return diff.mean()
        return (diff * mask).sum() / mask.sum().clamp_min(1)

    def free_energies(self, v, cond=None):
        """Free energy of every frame under its own step's RBM, ``(B, T)``; plus the biases used."""
        bv, bh = self.step_biases(v, cond)
        return free_energy(v, self.W, bv, bh), bv, bh

    def pretrain(self, frames: torch.Tensor, *, epochs: int = 5, lr: float = 0.01, batch_size: int = 100,
                 k: int = 5, generator: torch.Generator | None = None, progress=None) -> None:
        """The paper's pretraining: fit ``W``, ``b_visible``, ``b_hidden`` as a plain RBM on single frames.

        CD-k with Adam on the same free-energy surrogate as :meth:`cd_loss` (Adam reaches in
        10 epochs what plain SGD-CD needs many more for). ``b_visible`` starts at the
        logit of each bit's frequency.
        """
        frames = frames.to(self.W.device, self.W.dtype)
        n = frames.shape[0]
        with torch.no_grad():
            self.b_visible.copy_(torch.logit(frames.mean(0).clamp(1e-3, 1 - 1e-3)))
        opt = torch.optim.Adam([self.W, self.b_visible, self.b_hidden], lr=lr)
        for _ in range(epochs):
            perm = (torch.randperm(n, generator=generator, device=frames.device) if generator is not None
                    else torch.randperm(n))
            for s in range(0, n, batch_size):
                v = frames[perm[s:s + batch_size]]
                neg, _ = self.gibbs(v, self.b_visible.detach(), self.b_hidden.detach(), k, generator=generator)
                loss = (free_energy(v, self.W, self.b_visible, self.b_hidden)
                        - free_energy(neg, self.W, self.b_visible, self.b_hidden)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if progress is not None:
                progress()

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def sample(self, num_steps: int, *, primer: torch.Tensor | None = None, cond: torch.Tensor | None = None,
               temperature: float = 1.0, gibbs_steps: int = 25, generator: torch.Generator | None = None,
               progress: bool = False) -> torch.Tensor:
        """Generate ``num_steps`` new frames after ``primer`` (``(T0, V)``), returning ``(num_steps, V)``.

        Each step runs ``gibbs_steps`` Gibbs sweeps in that step's RBM (at
        ``temperature``), starting from the previous frame; the recurrent state
        is carried forward, so the cost per step does not grow with the length.
        """
        if cond is not None:
            cond = cond.reshape(1, -1)
        return self.sample_batch(num_steps, [generator], primer=primer, cond=cond, temperature=temperature,
                                 gibbs_steps=gibbs_steps, progress=progress)[0]

    @torch.no_grad()
    def sample_batch(self, num_steps: int, generators, *, primer: torch.Tensor | None = None,
                     cond: torch.Tensor | None = None, temperature: float = 1.0, gibbs_steps: int = 25,
                     progress: bool = False) -> torch.Tensor:
        """One piece per generator, all at once: ``(len(generators), num_steps, V)``.

        Each piece draws its uniforms from its own generator in the order one-at-a-time
        sampling drew them (per step and sweep: the hidden units, then the visible ones;
        ``torch.bernoulli(p)`` is ``torch.rand() < p`` on the same stream), so piece ``r``
        equals :meth:`sample` with ``generators[r]`` alone, up to float rounding in the
        batched matrix products. ``cond`` is ``(cond_dim,)`` for all pieces or ``(N, cond_dim)``.
        """
        from tqdm.auto import tqdm

        N, V, H = len(generators), self.config.num_visible, self.config.num_hidden
        dev, dt = self.W.device, self.W.dtype
        c = None
        if self.config.cond_dim:
            c = torch.zeros(N, 1, self.config.cond_dim, device=dev, dtype=dt) if cond is None else \
                cond.to(dev, dt).reshape(-1, 1, self.config.cond_dim).expand(N, 1, -1)
        state = None
        prev = torch.zeros(N, 1, V, device=dev, dtype=dt)

        def advance(frame, state):
            x = frame if c is None else torch.cat([frame, c], -1)
            out, state = self.rnn(x, state)
            return out[:, -1], state

        if primer is not None and len(primer):
            p = primer.to(dev, dt)[None].expand(N, -1, -1)
            x = torch.cat([prev, p[:, :-1]], 1)
            x = x if c is None else torch.cat([x, c.expand(N, x.shape[1], -1)], -1)
            _, state = self.rnn(x, state)
            prev = p[:, -1:]
        # Per step and sweep: H hidden then V visible uniforms, per piece from its own generator.
        u = torch.stack([torch.rand(num_steps, gibbs_steps, H + V, generator=g, dtype=dt) for g in generators], 1)
        inv_t = 1.0 / temperature
        frames = []
        for t in tqdm(range(num_steps), desc="generating", unit="step", disable=not progress):
            h_state, state = advance(prev, state)
            bv = self.b_visible + self.W_uv(h_state)
            bh = self.b_hidden + self.W_uh(h_state)
            if c is not None:
                bv = bv + self.cond_v(c[:, 0])
                bh = bh + self.cond_h(c[:, 0])
            v = prev[:, 0]
            for k in range(gibbs_steps):  # the sweeps of :meth:`gibbs`, with the uniforms given
                h = (u[t, :, k, :H].to(dev) < torch.sigmoid((v @ self.W + bh) * inv_t)).to(dt)
                v = (u[t, :, k, H:].to(dev) < torch.sigmoid((h @ self.W.t() + bv) * inv_t)).to(dt)
            frames.append(v)
            prev = v[:, None]
        return torch.stack(frames, 1) if frames else torch.zeros(N, 0, V, device=dev)
