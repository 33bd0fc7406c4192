"""Annealed importance sampling (AIS) for the partition function of binary RBMs.

An RBM with weights ``W`` (visible x hidden), visible bias ``b_visible`` and
hidden bias ``b_hidden`` has the unnormalised marginal

    p*(v) = exp(v.b_visible) * prod_j (1 + exp(b_hidden_j + (v W)_j))

and ``log p(v) = -F(v) - log Z``. ``Z`` sums over all ``2**V`` visible states,
so it is estimated with AIS (Neal 2001; Salakhutdinov & Murray 2008): start from
a factorised base RBM ``A`` (no weights, visible bias ``a``) whose ``Z_A`` is
known, and move through the intermediate distributions

    f_k(v) = v.((1 - beta_k) a + beta_k b_visible) + sum_j softplus(beta_k (b_hidden_j + (v W)_j))

for inverse temperatures ``0 = beta_0 < ... < beta_K = 1`` with one Gibbs sweep
at each. Each chain's importance weight is ``sum_k f_k(v_k) - f_{k-1}(v_k)``;
the mean of the weights is an unbiased estimate of ``Z / Z_A``. Its logarithm is
biased low (by Jensen) by about half the variance of the log-estimate, which is
why the standard error is reported with it.

Everything is generic over a *batch* of RBMs that share ``W`` but have their own
biases: pass ``b_visible`` of shape ``(N, V)`` and ``b_hidden`` of shape
``(N, H)`` to get ``N`` estimates at once. That is exactly the RNN-RBM's case
(one RBM per time step, biases set by the recurrent state), any conditional RBM's,
and, with ``N = 1``, the plain RBM's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# One free energy and one exact log Z for every binary RBM in moodsong; re-exported here, beside AIS.
from moodsong.models.rbm import exact_log_partition, free_energy

__all__ = ["AISResult", "free_energy", "ais_log_partition", "exact_log_partition", "default_betas"]


@dataclass
class AISResult:
    """Result of :func:`ais_log_partition`.

    Attributes
    ----------
    log_z : torch.Tensor
        Estimate of ``log Z`` per RBM, shape ``(N,)``, in nats.
    log_z_stderr : torch.Tensor
        Standard error of each ``log_z`` (delta method: ``std(w) / (sqrt(M) mean(w))``
        over the ``M`` chains' weights), shape ``(N,)``.
    log_weights : torch.Tensor
        Log importance weights ``log(w) + log Z_A``, shape ``(N, M)``.
    num_chains : int
    num_betas : int
    """

    log_z: torch.Tensor
    log_z_stderr: torch.Tensor
    log_weights: torch.Tensor
    num_chains: int
    num_betas: int


def default_betas(num_betas: int = 1000) -> torch.Tensor:
    """Inverse temperatures in the layout of Salakhutdinov & Murray (2008), scaled to ``num_betas``.

    Half of the points go to ``[0, 0.5)``, three tenths to ``[0.5, 0.9)`` and a
    fifth to ``[0.9, 1]``: the distributions change fastest near ``beta = 1``.
    """
    if num_betas < 10:
        return torch.linspace(0, 1, max(num_betas, 2), dtype=torch.float64)
    n1, n2 = num_betas // 2, (3 * num_betas) // 10
    n3 = num_betas - n1 - n2
    return torch.cat([
        torch.linspace(0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
        torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
        torch.linspace(0.9, 1.0, n3, dtype=torch.float64),
    ])


@torch.no_grad()
def ais_log_partition(
    W: torch.Tensor,
    b_visible: torch.Tensor,
    b_hidden: torch.Tensor,
    *,
    num_chains: int = 100,
    betas: torch.Tensor | int = 1000,
    base_visible_bias: torch.Tensor | None = None,
    chunk: int = 256,
    generator: torch.Generator | None = None,
) -> AISResult:
    """Estimate ``log Z`` of one or many RBMs by AIS.

    Parameters
    ----------
    W : torch.Tensor
        Weights, shape ``(V, H)``, shared by every RBM in the batch.
    b_visible, b_hidden : torch.Tensor
        Biases, shape ``(V,)``/``(H,)`` for one RBM or ``(N, V)``/``(N, H)`` for ``N`` RBMs.
    num_chains : int
        Independent AIS runs per RBM (``M``).
    betas : torch.Tensor or int
        Inverse temperatures from 0 to 1, or how many (see :func:`default_betas`).
    base_visible_bias : torch.Tensor, optional
        Visible bias ``a`` of the base distribution, ``(V,)`` or ``(N, V)``. Default: each
        RBM's own ``b_visible``, so the base already matches the target's
        bias and only the weights are annealed in.
    chunk : int
        RBMs processed together (bounds memory at ``chunk * M * max(V, H)`` floats).
    generator : torch.Generator, optional
        For reproducible estimates.

    Returns
    -------
    AISResult
    """
    single = b_visible.dim() == 1
    bv = b_visible.reshape(-1, W.shape[0]).to(W.dtype)
    bh = b_hidden.reshape(-1, W.shape[1]).to(W.dtype)
    N = bv.shape[0]
    if bh.shape[0] != N:
        raise ValueError("b_visible and b_hidden must describe the same number of RBMs")
    base = bv if base_visible_bias is None else base_visible_bias.reshape(-1, W.shape[0]).to(W.dtype).expand(N, -1)
    if isinstance(betas, int):
        betas = default_betas(betas)
    betas = betas.to(W.dtype).to(W.device)
    logw_all = []
    for s in range(0, N, chunk):
        part = slice(s, s + chunk)
        logw_all.append(_ais_chunk(W, bv[part], bh[part], base[part], num_chains, betas, generator))
    logw = torch.cat(logw_all)  # (N, M), log(w) + log Z_A
    log_z = torch.logsumexp(logw, 1) - math.log(num_chains)
    # delta method on the mean of the weights, computed in log space for stability
    w = torch.exp(logw - log_z[:, None])  # weights relative to their mean (mean 1)
    stderr = w.std(1, unbiased=True) / math.sqrt(num_chains) if num_chains > 1 else torch.full_like(log_z, float("nan"))
    if single:
        return AISResult(log_z[:1], stderr[:1], logw[:1], num_chains, len(betas))
    return AISResult(log_z, stderr, logw, num_chains, len(betas))


def _ais_chunk(W, bv, bh, base, M, betas, generator):
    n, V = bv.shape
    # f_k(v) without the beta-independent terms: v.((1-b) a + b bv) + sum softplus(b (bh + vW))
    def log_f(v, beta, pre):
        return (v * ((1 - beta) * base[:, None] + beta * bv[:, None])).sum(-1) + F.softplus(beta * pre).sum(-1)

    # exact sample from the base (beta = 0): independent bits with bias a
    v = torch.bernoulli(torch.sigmoid(base)[:, None].expand(n, M, V).contiguous(), generator=generator)
    # log Z_A: visible factor times 2^H from the unconnected hidden units
    log_za = F.softplus(base).sum(-1) + W.shape[1] * math.log(2.0)
    logw = log_za[:, None].expand(n, M).clone()
    for k in range(1, len(betas)):
        b_prev, b = betas[k - 1], betas[k]
        pre = v @ W + bh[:, None]  # (n, M, H)
        logw += log_f(v, b, pre) - log_f(v, b_prev, pre)
        if k == len(betas) - 1:
            break
        # one Gibbs sweep that leaves f_k invariant
        h = torch.bernoulli(torch.sigmoid(b * pre), generator=generator)
        act = (1 - b) * base[:, None] + b * (bv[:, None] + h @ W.t())
        v = torch.bernoulli(torch.sigmoid(act), generator=generator)
    return logw
