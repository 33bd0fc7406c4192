"""Training loop for the RBM: contrastive divergence over piano-roll windows.

The loop is deliberately thin (nanoGPT-style): pick batches, call
``RBM.cd_update``, log metrics, checkpoint. A checkpoint is written every
``checkpoint_every`` epochs, at the end, and on Ctrl-C, so an interrupted run
loses at most a few epochs and ``resume=True`` continues it exactly.

Two backends compute the same CD updates, chosen by ``TrainConfig.backend``
(``moodsong train --backend``):

- ``sparse``: the fused kernel of :mod:`moodsong.models.sparse_cd`, a whole
  epoch per compiled call, with its own counter-based random stream (saved in the
  checkpoint like the torch generator; it also draws the shuffled order). It needs
  numba, a CPU, one process and the windows in memory;
- ``torch``: the tensor loop of :meth:`RBM.cd_update` (any device, data-parallel
  under torchrun, sharded corpora read batch by batch);
- ``auto`` (default): ``sparse`` wherever it can run, else ``torch``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from moodsong.corpora.corpus import Corpus
from moodsong.corpora.shards import WindowTable
from moodsong.errors import MoodsongError
from moodsong.models.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from moodsong.models.rbm import RBM, RBMConfig, bernoulli
from moodsong.training import distributed as _dist


@dataclass
class TrainConfig:
    """Hyperparameters of CD training. Defaults are the demo's (CD-1, lr 0.005, batch 100, 200 epochs).

    Parameters
    ----------
    order : {"shuffled", "per-song"}
        ``shuffled`` (default) draws batches of windows from the whole corpus;
        ``per-song`` reproduces the demo's loop of one song's windows at a time.
    backend : {"auto", "sparse", "torch"}
        Which implementation runs the updates (see the module docstring). The two draw
        different random streams, so a seed reproduces a run only on the same backend.
    persistent : bool
        Persistent CD: negative chains carry over between updates.
    validation_fraction : float
        Share of pieces held out to report validation metrics.
    """

    lr: float = 0.005
    batch_size: int = 100
    epochs: int = 200
    cd_k: int = 1
    persistent: bool = False
    order: str = "shuffled"
    validation_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 10
    eval_every: int = 5
    backend: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MoodsongError("--device cuda was asked for but no CUDA device is available")
    return torch.device(device)


def split_pieces(corpus: Corpus, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out whole pieces (not windows) so validation measures generalisation to new music."""
    n = len(corpus)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = int(round(n * fraction)) if n >= 5 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


@torch.no_grad()
def evaluate_rbm(model: RBM, windows: torch.Tensor, max_windows: int = 128) -> dict:
    """Validation metrics: pseudo-log-likelihood and free energy per window, reconstruction error."""
    v = windows[:max_windows]
    if v.shape[0] == 0:
        return {}
    return {
        "pll": float(model.pseudo_log_likelihood(v).mean()),
        "free_energy": float(model.free_energy(v).mean()),
        "recon_error": float(model.reconstruction_error(v).mean()),
    }


BACKENDS = ("auto", "sparse", "torch")


def _sparse_cd(tc: TrainConfig, device: torch.device, ctx, resident: np.ndarray | None, song_start: np.ndarray,
               state: torch.Tensor | None, chains: torch.Tensor | None):
    """The fused sparse CD kernel (:mod:`moodsong.models.sparse_cd`) for this run, or ``None`` for the torch loop.

    ``tc.backend`` decides: ``torch`` never uses it, ``auto`` uses it where it can run, ``sparse``
    insists. It takes per-song or shuffled batches of binary windows held in memory, on the CPU, in
    one process; it continues the stream ``state`` and persistent ``chains`` from a checkpoint.

    Raises
    ------
    MoodsongError
        With ``backend="sparse"`` where the kernel cannot run.
    """
    if tc.backend == "torch":
        return None
    why = ("it runs on the CPU only" if device.type != "cpu" else
           "it runs in one process only" if ctx.distributed else
           "it needs the windows in memory (not a sharded corpus)" if resident is None else
           "it needs binary windows" if not (len(resident) and resident.max() <= 1) else "")
    if not why:
        try:
            from moodsong.models.sparse_cd import SparseCD
        except (ImportError, RuntimeError) as exc:  # no numba, or nowhere to cache its compiled code
            why = f"the kernel is unavailable ({exc})"
    if why:
        if tc.backend == "sparse":
            raise MoodsongError(f"backend 'sparse' cannot train this run: {why}; use --backend torch or auto")
        return None
    if tc.order == "shuffled":  # each epoch's batches: consecutive batch_size windows of a fresh permutation
        bounds = list(range(0, len(resident), tc.batch_size))
    else:
        songs = zip(song_start[:-1].tolist(), song_start[1:].tolist())
        bounds = [i for a, b in songs for i in range(a, b, tc.batch_size)]
    return SparseCD(resident, bounds + [int(song_start[-1])], seed=tc.seed,
                    state=None if state is None else state.cpu().numpy(),
                    persistent_rows=tc.batch_size if tc.persistent else 0,
                    chains=None if chains is None else chains.cpu().numpy(), shuffle=tc.order == "shuffled")


def train_rbm(
    corpus: Corpus,
    out: str | Path,
    model_config: RBMConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[RBM, list[dict]]:
    """Train an RBM on ``corpus``, checkpointing to ``out`` (a folder; files ``model.json``/``model.safetensors``).

    Returns the trained model and the per-epoch metric history.

    Under ``torchrun`` (an initialised process group, see :mod:`moodsong.training.distributed`)
    each rank trains on its slice of every global batch of ``batch_size`` windows,
    the CD statistics are summed over ranks, and only rank 0 logs and writes
    checkpoints; the result equals single-process training up to float rounding.
    A :class:`~moodsong.corpora.shards.ShardedCorpus` is read lazily, batch by batch.
    """
    tc = train_config if train_config is not None else TrainConfig()
    if tc.order not in ("shuffled", "per-song"):
        raise MoodsongError(f"unknown batch order {tc.order!r} (use shuffled or per-song)")
    if tc.backend not in BACKENDS:
        raise MoodsongError(f"unknown backend {tc.backend!r} (use {', '.join(BACKENDS)})")
    out = Path(out)
    ckpt = out / "model"
    ctx = _dist.current()
    device = _dist.device_for(ctx, tc.device) if ctx.distributed else resolve_device(tc.device)
    log = ctx.log(log)
    progress = progress and ctx.is_main
    mc = model_config or RBMConfig(pianoroll=corpus.config)
    if mc.pianoroll != corpus.config:
        raise MoodsongError("the model's piano-roll settings differ from the corpus's")

    gen = torch.Generator(device=device)
    gen.manual_seed(tc.seed)
    history: list[dict] = []
    start_epoch = 0
    chains = None
    fast_state = None
    if resume and checkpoint_paths(ckpt)[1].exists():
        model, meta, extra = load_checkpoint(ckpt, map_location=device)
        if meta["model_type"] != "rbm" or RBMConfig.from_dict(meta["model_config"]) != mc:
            raise MoodsongError(f"{out}: the checkpoint there has a different model configuration; use another --out")
        start_epoch = int(meta.get("epoch", 0))
        history = list(meta.get("history", []))
        if "rng" in extra:
            gen.set_state(extra["rng"].cpu())
        chains = extra.get("chains")
        fast_state = extra.get("sparse_cd")
        if log:
            log(f"resuming from epoch {start_epoch} ({checkpoint_paths(ckpt)[1]})")
    else:
        if checkpoint_paths(ckpt)[1].exists() and not overwrite:
            raise MoodsongError(f"{out} already holds a model; pass --resume to continue it, --force to start over, "
                                "or another --out")
        torch.manual_seed(tc.seed)
        model = RBM(mc).to(device)
    if ctx.distributed:
        # Rank 0's state wins, so a resume also works where only rank 0 sees the checkpoint.
        start_epoch, history, rng, chains = ctx.broadcast_object(
            (start_epoch, history, gen.get_state(), None if chains is None else chains.cpu()))
        gen.set_state(rng)
        chains = None if chains is None else chains.to(device)
        ctx.broadcast_tensors_(model.parameters())

    train_idx, val_idx = split_pieces(corpus, tc.validation_fraction, tc.seed)
    T = mc.num_timesteps
    table = WindowTable(corpus, train_idx, T)
    if len(table) == 0:
        raise MoodsongError(f"no piece is at least {T} steps long; nothing to train on")
    resident = table.in_memory()
    # Small corpora live on the device whole; sharded ones are gathered batch by batch from the mapped shards.
    data = None if resident is None else torch.from_numpy(resident).to(device=device, dtype=torch.float32)
    val_table = WindowTable(corpus, val_idx, T)
    val = torch.from_numpy(val_table.gather(np.arange(min(len(val_table), 128)))).to(device=device, dtype=torch.float32)
    n = len(table)
    song_start = np.concatenate([[0], np.cumsum(table.counts)])

    def fetch(idx: torch.Tensor) -> torch.Tensor:
        if data is not None:
            return data[idx]
        return torch.from_numpy(table.gather(idx.numpy())).to(device=device, dtype=torch.float32, non_blocking=True)

    if start_epoch == 0:
        # Visible biases start at the data's log-odds (Hinton's practical guide): the model begins
        # as sparse as the music instead of at 50% notes-on, and CD no longer spends epochs getting there.
        if data is not None:
            mean = data.mean(0)
        else:
            mean = torch.from_numpy(table.mean()).to(device=device, dtype=torch.float32)
        p = mean.clamp(1e-3, 1 - 1e-3)
        model.b_visible.copy_(torch.log(p / (1 - p)))
    meta_base = {
        "train_config": tc.to_dict(),
        "source": corpus.source,
        "num_pieces": len(corpus),
        "num_train_windows": int(n),
        "num_val_windows": len(val_table),
    }

    def checkpoint(epoch: int, sync: bool = True) -> None:
        if chains is not None and sync:
            _dist.sync_rows_(ctx, chains, chains.shape[0])  # collective: every rank takes part
        if not ctx.is_main:
            return
        extra = {"rng": gen.get_state()}
        if fast is not None:
            extra["sparse_cd"] = torch.from_numpy(fast.state())
            if fast.persistent:
                extra["chains"] = torch.from_numpy(fast.dense_chains())
        if chains is not None:
            extra["chains"] = chains
        save_checkpoint(model, ckpt, extra_tensors=extra, epoch=epoch, history=history, **meta_base)

    # The demo's matmuls are tiny (batch x 2340 x 50): a second OpenMP thread costs more in fork/join
    # than it saves, and on a busy machine it waits on a descheduled sibling (measured: bench/train_rbm.py).
    threads = torch.get_num_threads()
    if device.type == "cpu" and tc.batch_size * mc.num_visible * mc.num_hidden <= 2**25:
        torch.set_num_threads(1)
    # The sparse backend (auto: wherever it can run) trains a whole epoch in one compiled call.
    fast = _sparse_cd(tc, device, ctx, resident, song_start, fast_state, chains)
    chains = None if fast is not None else chains  # the kernel keeps its own
    fast_params = None if fast is None else tuple(p.data.numpy() for p in (model.W, model.b_visible, model.b_hidden))
    # Per-song batches are the same every epoch: in one process, keep each as a view of the data plus
    # its sparse (CSR) form, so the positive phase costs in proportion to the notes (~3% of the bits).
    fixed = None
    if fast is None and tc.order == "per-song" and data is not None and not ctx.distributed:
        with warnings.catch_warnings():
            # torch warns that its CSR layout is in beta; this path and the fused kernel learn alike
            # (tests/test_train_fast.py), so the warning only alarms users
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            fixed = [(data[i : min(i + tc.batch_size, b)], data[i : min(i + tc.batch_size, b)].to_sparse_csr())
                     for a, b in zip(song_start[:-1].tolist(), song_start[1:].tolist())
                     for i in range(a, b, tc.batch_size)]
    bar = tqdm(range(start_epoch, tc.epochs), initial=start_epoch, total=tc.epochs, desc="training", unit="epoch",
               disable=not progress)
    epoch = start_epoch
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            err_sum, updates = torch.zeros((), device=device), 0  # summed on the device: no sync per batch
            if fast is not None:  # no batches left for the loop below
                updates, err_mean, batches = fast.num_updates, fast.epoch(*fast_params, tc.lr, tc.cd_k), ()
            elif tc.order == "shuffled":
                perm = torch.randperm(n, generator=gen, device=device)
                perm = perm if data is not None else perm.cpu()  # host-side gathering needs host indices
                batches = (perm[i : i + tc.batch_size] for i in range(0, n, tc.batch_size))
            else:
                batches = (torch.arange(i, min(i + tc.batch_size, b), device=device if data is not None else "cpu")
                           for a, b in zip(song_start[:-1].tolist(), song_start[1:].tolist())
                           for i in range(a, b, tc.batch_size))
            for idx in (batches if fixed is None else fixed):
                if fixed is None:
                    nb = idx.shape[0]
                    lo, hi = ctx.batch_slice(nb)  # this rank's share of the global batch (all of it in one process)
                    v0, v0_sparse = fetch(idx[lo:hi]), None
                else:
                    v0, v0_sparse = idx
                    nb, lo, hi = v0.shape[0], 0, v0.shape[0]
                if tc.persistent:
                    if chains is None or chains.shape[0] != tc.batch_size:
                        chains = bernoulli(torch.full((tc.batch_size, mc.num_visible), 0.5, device=device), gen)
                    if ctx.distributed:
                        if nb != chains.shape[0]:  # a short batch re-deals chain rows between ranks
                            _dist.sync_rows_(ctx, chains, chains.shape[0])
                        neg = _dist.cd_update(model, v0, tc.lr, rows=(lo, hi, nb), k=tc.cd_k, chains=chains[lo:hi],
                                              generator=gen, ctx=ctx)
                        chains[lo:hi] = neg
                        if nb != chains.shape[0]:
                            _dist.sync_rows_(ctx, chains, nb)
                    else:
                        neg = model.cd_update(v0, tc.lr, k=tc.cd_k, chains=chains[: v0.shape[0]], generator=gen,
                                              v0_sparse=v0_sparse)
                        chains[: v0.shape[0]] = neg
                elif ctx.distributed:
                    neg = _dist.cd_update(model, v0, tc.lr, rows=(lo, hi, nb), k=tc.cd_k, generator=gen, ctx=ctx)
                else:
                    neg = model.cd_update(v0, tc.lr, k=tc.cd_k, generator=gen, v0_sparse=v0_sparse)
                updates += 1
                if updates % 16 == 1 and v0.shape[0]:  # a sample of batches is enough for a progress figure
                    err_sum += (v0 - neg).abs().mean()
            err = err_mean if fast is not None else float(err_sum) / math.ceil(updates / 16)
            row = {"epoch": epoch + 1, "updates": updates, "seconds": round(time.perf_counter() - t0, 4),
                   "train_sample_error": round(err, 6)}
            if ctx.is_main and ((epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs):
                # Exact pseudo-likelihood costs V x H per window, so it runs on a fixed subset, every few epochs.
                row.update({f"val_{k}": round(v, 6) for k, v in evaluate_rbm(model, val).items()})
            history.append(row)
            if "val_pll" in row:
                bar.set_postfix(pll=f"{row['val_pll']:.1f}", fe=f"{row['val_free_energy']:.1f}")
            if (epoch + 1) % tc.checkpoint_every == 0:
                checkpoint(epoch + 1)
        epoch = tc.epochs
    except KeyboardInterrupt:
        # no collective here: the other ranks may already be gone
        checkpoint(len(history) if not history else history[-1]["epoch"], sync=False)
        if log:
            saved = history[-1]["epoch"] if history else start_epoch
            log(f"interrupted: checkpoint saved at epoch {saved}; rerun with --resume to continue")
        raise
    finally:
        torch.set_num_threads(threads)
    checkpoint(tc.epochs)
    return model, history

