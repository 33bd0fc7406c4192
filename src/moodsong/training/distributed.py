"""Data-parallel training with PyTorch's own engine (``torchrun``, ``torch.distributed``, DDP).

Launch any training command under ``torchrun`` and it runs data-parallel::

    torchrun --nproc-per-node 2 -m moodsong.cli train bach --out runs/bach      # one machine, 2 processes
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint head:29400 --rdzv-id run1 -m moodsong.cli train ...  # two machines

How each model is kept identical to single-process training at the same
*global* batch:

- every rank draws the same permutation (same seed), takes the global batch and
  keeps only its contiguous slice of it (:meth:`DistContext.batch_slice`), so
  ranks read disjoint rows, like ``DistributedSampler``;
- the RBM's updates are manual (no autograd), so :func:`cd_update` all-reduces
  the summed positive-minus-negative statistics in one flat buffer and divides
  by the global batch size. Its random draws are made at the global batch's
  shape from the shared generator and sliced, so the Gibbs samples are the very
  ones a single process would draw: results match single-process training up to
  float summation order;
- the temporal models train with autograd, wrapped in
  ``DistributedDataParallel`` (:func:`wrap_ddp`); the per-rank loss is rescaled
  so that DDP's gradient average equals the global batch's per-frame mean.

Only rank 0 writes checkpoints and logs. Backends: NCCL when the ranks use
CUDA devices, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from moodsong.errors import MoodsongError
from moodsong.models.rbm import cd_statistics


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def batch_slice(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share ``[lo, hi)`` of a global batch of ``n`` rows (sizes differ by at most one)."""
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks, in place (a no-op in a single process)."""
        if self.distributed:
            dist.all_reduce(t)
        return t

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; for small things like flags and metrics)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_tensors_(self, tensors) -> None:
        """Overwrite ``tensors`` with rank 0's values."""
        if self.distributed:
            for t in tensors:
                dist.broadcast(t.data if isinstance(t, nn.Parameter) else t, src=0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def log(self, fn: Callable[[str], None] | None) -> Callable[[str], None]:
        """A logger that prints on rank 0 only."""
        return (lambda s: fn(s)) if (fn is not None and self.is_main) else (lambda s: None)


def launched_by_torchrun() -> bool:
    """True inside a ``torchrun`` (or any ``env://``-style) launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: str = "auto", backend: str | None = None, timeout_s: float = 1800) -> DistContext:
    """Join the process group described by torchrun's variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...).

    Returns a single-process context when not launched that way. The backend
    is NCCL when this rank will train on CUDA, else gloo; each rank on CUDA
    uses ``cuda:LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_available():
        raise MoodsongError("this PyTorch build has no torch.distributed")
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    backend = backend or ("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    except Exception as exc:  # e.g. an unreachable rendezvous endpoint
        raise MoodsongError(f"cannot join the distributed job ({exc})") from None
    return current()


def current() -> DistContext:
    """The context of the initialised process group, or a single-process one."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(ctx: DistContext, device: str) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA jobs, else as asked."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MoodsongError("--device cuda was asked for but no CUDA device is available")
        if ctx.distributed:
            return torch.device("cuda", ctx.local_rank)
    return torch.device(device)


# --------------------------------------------------------------------------- RBM (manual CD updates)


def _bernoulli_rows(p: torch.Tensor, rows: tuple[int, int, int], generator: torch.Generator | None) -> torch.Tensor:
    """Bernoulli samples of ``p`` (this rank's rows ``lo:hi`` of a ``n``-row batch) with the global batch's uniforms."""
    lo, hi, n = rows
    u = torch.rand((n, p.shape[1]), generator=generator, device=p.device, dtype=p.dtype)
    return (u[lo:hi] < p).to(p.dtype)


@torch.no_grad()
def cd_update(
    model,
    v0: torch.Tensor,
    lr: float,
    *,
    rows: tuple[int, int, int],
    k: int = 1,
    chains: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    ctx: DistContext | None = None,
) -> torch.Tensor:
    """Data-parallel twin of :meth:`moodsong.models.rbm.RBM.cd_update`.

    ``v0`` holds rows ``lo:hi`` of a global batch of ``n`` (``rows=(lo, hi, n)``);
    ``chains`` (persistent CD) are this rank's rows of the global chains. Every
    rank must call it with the same generator state. The positive and negative
    statistics are summed over ranks in one all-reduce and the update is scaled
    by the global batch, so all ranks apply the same update a single process
    would. Returns this rank's negative sample.
    """
    ctx = ctx or current()
    ph0, vk, phk = cd_statistics(model.W, model.b_visible, model.b_hidden, v0,
                                 lambda p: _bernoulli_rows(p, rows, generator), k=k, chains=chains)
    V, H = model.W.shape
    # One flat buffer: [dW | db_visible | db_hidden], so one all-reduce per update.
    buf = torch.empty(V * H + V + H, device=v0.device, dtype=v0.dtype)
    dW = buf[: V * H].view(V, H)
    torch.mm(v0.t(), ph0, out=dW)
    dW.addmm_(vk.t(), phk, alpha=-1.0)
    torch.sub(v0.sum(0), vk.sum(0), out=buf[V * H: V * H + V])
    torch.sub(ph0.sum(0), phk.sum(0), out=buf[V * H + V:])
    ctx.all_reduce_(buf)
    scale = lr / rows[2]
    model.W.add_(dW, alpha=scale)
    model.b_visible.add_(buf[V * H: V * H + V], alpha=scale)
    model.b_hidden.add_(buf[V * H + V:], alpha=scale)
    return vk


# --------------------------------------------------------------------------- autograd models (DDP)


class _LossModule(nn.Module):
    """Makes a temporal model's training loss its ``forward``, so DDP's hooks see the whole step."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, v, mask, generator=None, scale=1.0, cond=None):
        if getattr(self.model, "model_type", "") == "rnnrbm":
            loss = self.model.cd_loss(v, mask, cond, generator=generator)
        else:
            loss = self.model.loss(v, mask, cond)
        return loss * scale


def wrap_ddp(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``loss_fn(v, mask, generator=None, scale=1.0, cond=None)``: the model's training loss (DDP when distributed).

    ``cond`` holds each piece's condition row, ``(B, cond_dim)``, for conditioned models.

    DDP averages gradients over ranks; pass ``scale = world_size * local_frames /
    global_frames`` to make that average the global batch's per-frame mean (a rank
    with no share of a short last batch runs any piece with ``scale=0``).
    """
    net = _LossModule(model)
    if not ctx.distributed:
        return net
    ids = [device.index] if device.type == "cuda" else None
    # static_graph: the same parameters take part in every step, and a few never do (e.g. the last
    # residual projection of WaveNet), which DDP then skips without searching the graph each step.
    return nn.parallel.DistributedDataParallel(net, device_ids=ids, static_graph=True)


def sync_rows_(ctx: DistContext, t: torch.Tensor, n: int) -> torch.Tensor:
    """Make rows ``:n`` of ``t`` agree on all ranks, each contributing its :meth:`~DistContext.batch_slice` of ``n``.

    Used for persistent-CD chains: each rank advances only its own rows, and a
    short last batch re-deals the rows, so they are exchanged around it.
    """
    if ctx.distributed:
        lo, hi = ctx.batch_slice(n)
        part = torch.zeros_like(t[:n])
        part[lo:hi] = t[lo:hi]
        t[:n] = ctx.all_reduce_(part)
    return t
