"""A WaveNet-style model of piano-roll frames: dilated causal convolutions + a NADE per frame.

After van den Oord et al. (2016), applied to frames instead of audio samples:

- the past frames ``v_<t`` go through stacked *causal* 1-D convolutions
  (kernel 2, dilations 1, 2, 4, ..., so the receptive field doubles per layer),
  each a gated residual block ``tanh(.) * sigmoid(.)`` with a skip output;
- the summed skips give a state ``s_t`` that depends on ``v_<t`` only;
- frame ``t`` itself is modelled *jointly* over its pitches by a NADE
  (Larochelle & Murray 2011) whose biases are set by ``s_t``, as in the RNN-NADE
  of Boulanger-Lewandowski et al. (2012):

      p(v_t | v_<t) = prod_i p(v_ti | v_t,<i, s_t)
      p(v_ti = 1 | ...) = sigmoid(b_ti + V_i . sigmoid(c_t + W_<i v_t,<i))

So ``log p(piece)`` is exact: a sum of per-pitch Bernoulli log-probabilities, no
partition function. Generation caches each layer's last inputs
(:class:`CachedGenerator`), so a new frame costs one column per layer however
long the piece already is.

Sampling runs many pieces at once (:meth:`WaveNetNADE.sample_batch`): the
network steps all of them together, and the NADE's pitch-by-pitch loop is a
numpy loop over pitches vectorised over pieces. Each piece draws its uniforms
from its own generator in the order one-at-a-time sampling drew them
(``torch.bernoulli(p)`` is ``torch.rand() < p`` on the same stream), so piece
``r`` of a batch is the piece :meth:`~WaveNetNADE.sample` gives with generator
``r`` alone (``tests/test_batch_sampling.py``). Measured on the 2-core machine
(one torch thread, shipped emotion model, 128 steps): 6 pieces one after another
took 10.2 s with the former torch NADE loop; see ``bench/README.md`` for the
batched figure.

``cond`` (an emotion vector) enters every gated block (WaveNet's global
conditioning) and the NADE's visible biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moodsong.models.frames import FrameConfigMixin, FrameModelMixin


@dataclass
class WaveNetConfig(FrameConfigMixin):
    """Hyperparameters.

    Parameters
    ----------
    num_visible : int
        Frame width (bits per time step).
    channels : int
        Residual channels.
    skip_channels : int
        Skip/output channels.
    kernel_size : int
        Taps of each dilated convolution.
    dilations : tuple of int
        One gated block per entry; receptive field is ``1 + (kernel_size - 1) * sum(dilations)`` frames.
        A list is accepted and stored as a tuple (configs are values, not shared mutable state).
    nade_hidden : int
        Hidden units of the NADE output. 100 is what the shipped ``pop-wavenet`` was trained with
        (docs/models.md); the JSB benchmark model uses 300.
    dropout : float
        Dropout on the gated activations (training only).
    cond_dim : int
        Size of the optional conditioning (emotion) vector; 0 for none.
    representation : dict
        How frames map to music (see :mod:`moodsong.temporal`), stored for generation.
    """

    num_visible: int = 88
    channels: int = 64
    skip_channels: int = 128
    kernel_size: int = 2
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32)
    nade_hidden: int = 100
    dropout: float = 0.1
    cond_dim: int = 0
    representation: dict | None = None

    def __post_init__(self):
        self.dilations = tuple(int(d) for d in self.dilations)

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)



class GatedBlock(nn.Module):
    """Dilated causal convolution -> tanh * sigmoid gate -> residual and skip projections.

    Tensors are time-major ``(B, T, C)``. The convolution is written as one
    matrix product over the ``kernel_size`` taps ``x[t - (k-1) d], ..., x[t]``
    stacked on the channel axis: on CPUs this is several times faster than
    ``Conv1d`` with dilation, and it is the same function.
    """

    def __init__(self, channels, skip_channels, kernel_size, dilation, dropout, cond_dim):
        super().__init__()
        self.dilation, self.kernel_size = dilation, kernel_size
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Linear(kernel_size * channels, 2 * channels)
        self.cond = nn.Linear(cond_dim, 2 * channels, bias=False) if cond_dim else None
        self.res = nn.Linear(channels, channels)
        self.skip = nn.Linear(channels, skip_channels)
        self.drop = nn.Dropout(dropout)

    def taps(self, x):
        """``(B, T, C)`` -> ``(B, T, k*C)``: each step's causal window, zero before the start."""
        T = x.shape[1]
        xp = F.pad(x, (0, 0, self.pad, 0))
        return torch.cat([xp[:, j * self.dilation: j * self.dilation + T] for j in range(self.kernel_size)], -1)

    def gate(self, z, cond):
        if cond is not None and self.cond is not None:
            z = z + self.cond(cond)  # cond: (B, T, cond_dim)
        a, b = z.chunk(2, -1)
        return self.drop(torch.tanh(a) * torch.sigmoid(b))

    def forward(self, x, cond=None):
        """``x``: ``(B, T, C)`` -> ``(residual output, skip)``."""
        g = self.gate(self.conv(self.taps(x)), cond)
        return x + self.res(g), self.skip(g)


class WaveNetNADE(FrameModelMixin, nn.Module):
    """Dilated causal CNN over frames with a NADE output per frame; see the module docstring."""

    model_type = "wavenet"

    def __init__(self, config: WaveNetConfig | None = None):
        super().__init__()
        self.config = c = config if config is not None else WaveNetConfig()
        V, C, Hn = c.num_visible, c.channels, c.nade_hidden
        # one extra input channel marks the "before the piece" frame
        self.inp = nn.Linear(V + 1, C)
        self.blocks = nn.ModuleList(GatedBlock(C, c.skip_channels, c.kernel_size, d, c.dropout, c.cond_dim)
                                    for d in c.dilations)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(c.skip_channels, c.skip_channels), nn.ReLU())
        self.to_b = nn.Linear(c.skip_channels, V)  # NADE visible biases per step
        self.to_c = nn.Linear(c.skip_channels, Hn)  # NADE hidden biases per step
        self.cond_b = nn.Linear(c.cond_dim, V, bias=False) if c.cond_dim else None
        # NADE weights shared over time: W reads the pitches below, V_out predicts the next one
        self.nade_W = nn.Parameter(torch.randn(V, Hn) * 0.01)
        self.nade_V = nn.Parameter(torch.randn(V, Hn) * 0.01)

    # ------------------------------------------------------------------ conditioning state

    def _cond_seq(self, cond, B, T, device):
        if not self.config.cond_dim:
            return None
        if cond is None:
            return torch.zeros(B, T, self.config.cond_dim, device=device, dtype=self.nade_W.dtype)
        cond = cond.to(device=device, dtype=self.nade_W.dtype)
        return cond[:, None].expand(B, T, -1) if cond.dim() == 2 else cond

    def _shifted_input(self, v):
        """``(B, T, V)`` frames -> ``(B, T, V + 1)`` input where row ``t`` holds frame ``t - 1``."""
        B, T, V = v.shape
        start = torch.zeros(B, 1, V + 1, dtype=v.dtype, device=v.device)
        start[..., V] = 1
        prev = F.pad(v[:, :-1], (0, 1))
        return torch.cat([start, prev], 1)

    def nade_biases(self, v: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step NADE biases ``(b_t, c_t)``, shapes ``(B, T, V)`` and ``(B, T, nade_hidden)``; causal in ``v``."""
        B, T, _ = v.shape
        c = self._cond_seq(cond, B, T, v.device)
        x = self.inp(self._shifted_input(v))
        skip = 0
        for blk in self.blocks:
            x, s = blk(x, c)
            skip = skip + s
        s = self.out(skip)
        b, hc = self.to_b(s), self.to_c(s)
        if c is not None:
            b = b + self.cond_b(c)
        return b, hc

    # ------------------------------------------------------------------ NADE

    def nade_log_prob(self, v: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``log p(v | b, c)`` of frames ``v`` (``(N, V)``) under NADEs with biases ``b``/``c``; shape ``(N,)``."""
        logits = self.nade_logits(v, b, c)
        return -F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)

    def nade_logits(self, v, b, c):
        """Logit of ``p(v_i = 1 | v_<i)`` for every pitch ``i`` (teacher-forced), ``(N, V)``.

        The hidden pre-activation of pitch ``i`` is ``c + sum_{j < i} v_j W_j``: it changes only at the
        frame's nonzero pitches, so a frame with ``k`` notes has ``k + 1`` distinct hidden vectors. They are
        computed once each (``(N, K + 1, Hn)``, ``K`` the most notes in any frame) and every pitch reads the
        one below it, instead of ``V`` hidden vectors per frame (``(N, V, Hn)``). Same values and gradients as
        the dense form (to float rounding, ~1e-6 relative). Measured on 8192 Nottingham valid frames (88 keys,
        at most 7 notes a frame), NADE 150 hidden, one CPU thread: forward 0.59 s vs 6.7 s, forward and
        backward 0.73 s vs 11.4 s.
        """
        N, V = v.shape
        nz = v != 0
        below = torch.cumsum(nz.long(), 1) - nz.long()  # (N, V): nonzero pitches under pitch i
        n_idx, p_idx = nz.nonzero(as_tuple=True)
        K = int(below[n_idx, p_idx].max()) + 1 if n_idx.numel() else 0
        W = self.nade_W
        rows = torch.zeros(N, K, W.shape[1], dtype=torch.result_type(v, W), device=v.device)
        rows = rows.index_put((n_idx, below[n_idx, p_idx]), v[n_idx, p_idx, None] * W[p_idx])
        a = c[:, None, :] + F.pad(torch.cumsum(rows, 1), (0, 0, 1, 0))  # (N, K + 1, Hn): 0, 1, ..., K notes in
        per_seg = torch.sigmoid(a) @ self.nade_V.t()  # (N, K + 1, V): each hidden vector against every pitch
        return b + per_seg.gather(1, below[:, None, :]).squeeze(1)

    @torch.no_grad()
    def nade_sample(self, b, c, *, temperature=1.0, generator=None):
        """Draw frames pitch by pitch from NADEs with biases ``b`` (``(N, V)``) and ``c`` (``(N, Hn)``).

        The N frames share ``generator``; uniforms are drawn pitch-major (pitch 0 of
        every row, then pitch 1, ...), as ``torch.bernoulli`` per pitch drew them.
        """
        N, V = b.shape
        u = torch.rand(V, N, generator=generator, dtype=b.dtype).T
        return torch.from_numpy(self._nade_draw(b, c, u.numpy(), temperature)).to(b.device, b.dtype)

    def _nade_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, V)`` as numpy float32 arrays, cached while the parameters are unchanged."""
        key = (self.nade_W._version, self.nade_V._version, self.nade_W.data_ptr(), self.nade_V.data_ptr())
        if getattr(self, "_nade_np_key", None) != key:
            self._nade_np = (self.nade_W.detach().cpu().float().numpy().copy(),
                             self.nade_V.detach().cpu().float().numpy().copy())
            self._nade_np_key = key
        return self._nade_np

    def _nade_draw(self, b, c, u: np.ndarray, temperature: float) -> np.ndarray:
        """The NADE's sequential pitch loop in numpy, vectorised over the N rows.

        ``u`` (N, V) are the uniforms: pitch i of row r is on when ``u[r, i] < p``.
        Small numpy operations cost ~1 us against torch's ~5-10 us, and this loop
        is V steps long per frame: 8 s of 6 candidates' 13.8 s went here. Each row's hidden sigmoid is
        recomputed only when one of its pitches turns on (identical draws, checked bit for bit on the shipped
        JSB and pop models): ``frame_accuracy`` of jsb-wavenet on 25 JSB valid chorales (1469 frames x 10
        draws), one thread, 0.82 s against 2.02 s recomputing every row at every pitch.
        """
        W, Vw = self._nade_weights()
        b = b.detach().cpu().float().numpy()
        a = c.detach().cpu().float().numpy().copy()  # hidden pre-activations, updated as pitches are drawn
        N, V = b.shape
        v = np.zeros((N, V), np.float32)
        scaled = temperature != 1.0
        one = np.float32(1.0)
        # a row's hidden units change only when one of its pitches turns on: recompute the sigmoid for those
        # rows alone (the same values as recomputing all; ~4 notes of 88 keys a frame make it ~20x fewer exps)
        h = one / (one + np.exp(-a))
        for i in range(V):
            logit = b[:, i] + h @ Vw[i]
            if scaled:  # divided, not multiplied by 1/T: the rounding torch's ``logit / T`` had
                logit = logit / np.float32(temperature)
            on = u[:, i] < one / (one + np.exp(-logit))
            if on.any():
                v[on, i] = 1.0
                a[on] += W[i]
                h[on] = one / (one + np.exp(-a[on]))
        return v

    # ------------------------------------------------------------------ likelihood

    def log_prob(self, v: torch.Tensor, mask: torch.Tensor | None = None,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(v_t | v_<t)`` per frame in nats, ``(B, T)`` (zero where ``mask`` is false)."""
        b, c = self.nade_biases(v, cond)
        B, T, V = v.shape
        if mask is None:
            return self.nade_log_prob(v.reshape(-1, V), b.reshape(-1, V), c.reshape(B * T, -1)).reshape(B, T)
        # run the NADE only on real frames: padding would cost as much as data
        m = mask.bool()
        out = torch.zeros(B, T, dtype=v.dtype, device=v.device)
        out[m] = self.nade_log_prob(v[m], b[m], c[m])
        return out

    def loss(self, v, mask=None, cond=None, **_):
        """Mean negative log-likelihood per frame (nats) over the real frames."""
        lp = self.log_prob(v, mask, cond)
        n = v.shape[0] * v.shape[1] if mask is None else mask.sum().clamp_min(1)
        return -lp.sum() / n

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def sample(self, num_steps: int, *, primer: torch.Tensor | None = None, cond: torch.Tensor | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None,
               progress: bool = False) -> torch.Tensor:
        """Generate ``num_steps`` frames after ``primer`` (``(T0, V)``); returns ``(num_steps, V)``."""
        if cond is not None and cond.dim() == 1:
            cond = cond[None]
        return self.sample_batch(num_steps, [generator], primer=primer, cond=cond, temperature=temperature,
                                 progress=progress)[0]

    @torch.no_grad()
    def sample_batch(self, num_steps: int, generators: Sequence[torch.Generator | None], *,
                     primer: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                     temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
        """Generate one piece per generator, all at once; returns ``(len(generators), num_steps, V)``.

        Piece ``r`` equals ``sample(num_steps, generator=generators[r], cond=cond[r], ...)`` run
        alone with a generator in the same state (up to float rounding in the batched matrix
        products, which can flip a draw whose uniform lies within ~1e-7 of its probability).

        Parameters
        ----------
        generators : sequence of torch.Generator (or None for torch's default generator)
            One per piece; each is advanced by ``num_steps * V`` uniforms, as one-at-a-time
            sampling advances it.
        primer : tensor, optional
            ``(T0, V)`` frames every piece continues from.
        cond : tensor, optional
            ``(cond_dim,)`` for every piece or ``(N, cond_dim)``, one row per piece.
        """
        from tqdm.auto import tqdm

        N, V = len(generators), self.config.num_visible
        dev, dt = self.nade_W.device, self.nade_W.dtype
        if cond is not None:
            cond = cond.to(dev, dt)
            cond = cond.expand(N, -1) if cond.dim() == 1 or cond.shape[0] == 1 else cond
        gen = CachedGenerator(self, batch=N, cond=cond)
        if primer is not None:
            for frame in primer.to(dev, dt):
                gen.push(frame[None].expand(N, -1))
        # One draw per (step, pitch) per piece, in the order the one-at-a-time loop drew them.
        u = np.stack([torch.rand(num_steps, V, generator=g, dtype=dt).numpy() for g in generators], 1)
        out = torch.zeros(N, num_steps, V, dtype=dt)
        for t in tqdm(range(num_steps), desc="generating", unit="step", disable=not progress):
            b, c = gen.biases()
            v = torch.from_numpy(self._nade_draw(b, c, u[t], temperature)).to(dev, dt)
            gen.push(v)
            out[:, t] = v.cpu()
        return out.to(dev)


class CachedGenerator:
    """Step-by-step inference that keeps, per layer, only the inputs its dilated convolution still needs.

    ``biases()`` gives the NADE biases for the next frame; ``push(frame)`` appends
    a frame. Each call costs one output column per layer (fast generation,
    as in Paine et al. 2016), instead of re-running the whole context.
    """

    def __init__(self, model: WaveNetNADE, batch: int = 1, cond: torch.Tensor | None = None):
        self.m = model
        c = model.config
        dev, dt = model.nade_W.device, model.nade_W.dtype
        self.cond = None
        if c.cond_dim:
            self.cond = (torch.zeros(batch, 1, c.cond_dim, device=dev, dtype=dt) if cond is None
                         else cond.reshape(batch, 1, -1).to(dev, dt))
        # per layer: the last (kernel-1)*dilation + 1 inputs, zero-initialised like the causal padding
        self.buf = [torch.zeros(batch, blk.pad + 1, c.channels, device=dev, dtype=dt) for blk in model.blocks]
        start = torch.zeros(batch, 1, c.num_visible + 1, device=dev, dtype=dt)
        start[..., -1] = 1
        self._next_input = start  # column holding the previous frame

    def biases(self):
        m = self.m
        x = m.inp(self._next_input)  # (B, 1, C)
        skip = 0
        for i, blk in enumerate(m.blocks):
            self.buf[i] = torch.cat([self.buf[i][:, 1:], x], 1)
            taps = self.buf[i][:, :: blk.dilation].reshape(x.shape[0], 1, -1)  # the k inputs the conv reads
            g = blk.gate(blk.conv(taps), self.cond)  # exactly one output step
            x = x + blk.res(g)
            skip = skip + blk.skip(g)
        s = m.out(skip)
        b, c = m.to_b(s)[:, 0], m.to_c(s)[:, 0]
        if self.cond is not None:
            b = b + m.cond_b(self.cond[:, 0])
        self._pending = True
        return b, c

    def push(self, frame: torch.Tensor):
        """Append frame ``(B, V)``; the next :meth:`biases` call conditions on it."""
        if not getattr(self, "_pending", False):
            self.biases()  # advance the buffers past the current position first
        self._pending = False
        self._next_input = F.pad(frame, (0, 1))[:, None]
