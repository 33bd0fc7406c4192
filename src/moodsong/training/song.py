"""Train the song model: the melody network with PyTorch, the plan and accompaniment by counting.

``moodsong train-song SRC --out runs/song`` reads songs (:func:`moodsong.corpora.songs.load_songs`:
POP909 folders with their annotations, or any MIDI folder, chords then recognised), fits
the chord plan (:class:`~moodsong.song.plan.ChordPlanModel`) and the accompaniment
patterns (:class:`~moodsong.song.accomp.AccompanimentModel`), and trains
:class:`MelodyNet` on random 8-bar crops of every training song's melody with Adam,
keeping the epoch with the lowest validation loss. After every epoch it writes the model
(safetensors + JSON, atomically) and its optimiser state, so ``--resume`` continues a run
that was stopped. Under ``torchrun`` each rank takes its slice of every global batch and
DDP averages the gradients (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moodsong.corpora.pop909 import PopSong
from moodsong.errors import MoodsongError
from moodsong.song.melody import COND_DIM, MelodyConfig, Vocab, song_events

__all__ = ["MelodyNet", "SongTrainConfig", "train_song_model", "masked_cross_entropy"]


class MelodyNet(nn.Module):
    """Token embedding + linear condition -> 2-layer GRU -> next-token logits."""

    def __init__(self, config: MelodyConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed)
        self.cond = nn.Linear(config.cond_dim, config.embed)
        self.gru = nn.GRU(config.embed, config.hidden, num_layers=config.layers, batch_first=True,
                          dropout=config.dropout if config.layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, tokens: torch.Tensor, conds: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embed(tokens) + self.cond(conds))
        h, _ = self.gru(x)
        return self.out(self.drop(h))

    def loss(self, tokens: torch.Tensor, conds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per token) of predicting token t+1 from tokens <= t."""
        return masked_cross_entropy(self(tokens[:, :-1], conds[:, :-1]), tokens, mask)


def masked_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per token) of ``logits`` (B, T-1, V) against ``tokens[:, 1:]`` where ``mask``."""
    ce = nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    m = mask[:, 1:].float()
    return (ce * m).sum() / m.sum().clamp_min(1)


@dataclass
class SongTrainConfig:
    """Training settings of :func:`train_song_model`."""

    epochs: int = 40
    batch_size: int = 32
    crop_bars: int = 8
    crops_per_song: int = 3
    lr: float = 2e-3
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    patience: int = 6
    seed: int = 0
    melody: MelodyConfig = field(default_factory=MelodyConfig)


class _Crops:
    """Random ``crop_bars``-bar crops of songs' melody events (token index of each bar kept)."""

    def __init__(self, songs: list[PopSong], crop_bars: int, vocab: Vocab):
        self.items = []
        for s in songs:
            toks, conds = song_events(s, vocab=vocab)
            bar_at = np.flatnonzero(toks == vocab.bar)
            if len(bar_at) >= 2 and len(toks) > len(bar_at):
                self.items.append((toks, conds, np.append(bar_at, len(toks))))
        self.crop_bars = crop_bars

    def batch(self, picks: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seqs = []
        for i, b in picks:
            toks, conds, bar_at = self.items[i]
            lo, hi = bar_at[b], bar_at[min(b + self.crop_bars, len(bar_at) - 1)]
            seqs.append((toks[lo:hi], conds[lo:hi]))
        n = max(len(t) for t, _ in seqs)
        T = np.zeros((len(seqs), n), np.int64)
        C = np.zeros((len(seqs), n, COND_DIM), np.float32)
        M = np.zeros((len(seqs), n), bool)
        for j, (t, c) in enumerate(seqs):
            T[j, : len(t)], C[j, : len(t)], M[j, : len(t)] = t, c, True
        return torch.from_numpy(T), torch.from_numpy(C), torch.from_numpy(M)

    def draws(self, rng: np.random.Generator, per_song: int) -> list[tuple[int, int]]:
        out = []
        for i, (_, _, bar_at) in enumerate(self.items):
            bars = len(bar_at) - 1
            for _ in range(per_song):
                out.append((i, int(rng.integers(0, max(bars - self.crop_bars, 0) + 1))))
        rng.shuffle(out)
        return out


def train_song_model(
    train_songs: list[PopSong],
    valid_songs: list[PopSong],
    out: str | os.PathLike,
    config: SongTrainConfig | None = None,
    *,
    resume: bool = False,
    device: str = "auto",
    log: Callable[[str], None] | None = print,
    progress: bool = True,
) -> tuple[Path, MelodyNet]:
    """Fit plan and accompaniment, train the melody network.

    Returns
    -------
    stem : Path
        The checkpoint ``out/model`` (``model.safetensors`` + ``model.json``), loadable by
        :meth:`moodsong.song.model.SongModel.load` (it holds the best epoch).
    net : MelodyNet
        The network as it ended (the last epoch; on every rank the same).
    """
    from moodsong.fileio import atomic_path
    from moodsong.song.accomp import AccompanimentModel
    from moodsong.song.model import SongModel, fit_styles
    from moodsong.song.plan import ChordPlanModel
    from moodsong.training import distributed

    config = config or SongTrainConfig()
    if not train_songs:
        raise MoodsongError("no training songs")
    ctx = distributed.init_from_env(device)
    dev = distributed.device_for(ctx, device)
    log = ctx.log(log)
    out = Path(out)
    stem = out / "model"
    optim_path = out / "optim.pt"
    torch.manual_seed(config.seed)
    net = MelodyNet(config.melody).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict] = []
    start_epoch, best, bad = 0, math.inf, 0
    plan = ChordPlanModel().fit(train_songs)
    accomp = AccompanimentModel().fit(train_songs)
    styles = fit_styles(train_songs)
    if resume and optim_path.exists() and stem.with_suffix(".json").exists():
        state = torch.load(optim_path, map_location=dev, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        history, start_epoch, best, bad = state["history"], state["epoch"], state["best"], state["bad"]
        log(f"resumed after epoch {start_epoch} (best valid {best:.4f} nats/token)")
    vocab = Vocab(config.melody.vocab)
    train, valid = _Crops(train_songs, config.crop_bars, vocab), _Crops(valid_songs, config.crop_bars, vocab)
    if not train.items:
        raise MoodsongError("the training songs have no melody notes")
    loss_net = nn.parallel.DistributedDataParallel(net) if ctx.distributed else net
    vrng = np.random.default_rng(12345)
    vpicks = valid.draws(vrng, 1) if valid.items else []

    def validate() -> float:
        if not vpicks:
            return float("nan")
        net.eval()
        tot, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(vpicks), config.batch_size):
                T, C, M = valid.batch(vpicks[i: i + config.batch_size])
                k = int(M[:, 1:].sum())
                tot += float(net.loss(T.to(dev), C.to(dev), M.to(dev))) * k
                n += k
        net.train()
        return tot / max(n, 1)

    for epoch in range(start_epoch, config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        picks = train.draws(rng, config.crops_per_song)
        net.train()
        tot, n = 0.0, 0
        batches = range(0, len(picks), config.batch_size)
        it = batches
        if progress and ctx.is_main:
            from tqdm import tqdm

            it = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, unit="batch")
        for i in it:
            glob = picks[i: i + config.batch_size]
            lo, hi = ctx.batch_slice(len(glob))
            T, C, M = train.batch(glob[lo:hi] or glob[:1])
            T, C, M = T.to(dev), C.to(dev), M.to(dev)
            # under DDP the loss is computed from the wrapper's forward so that its gradient hooks run
            loss = masked_cross_entropy(loss_net(T[:, :-1], C[:, :-1]), T, M)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            opt.step()
            tot += loss.item() * len(glob)
            n += len(glob)
        v = validate()
        history.append({"epoch": epoch + 1, "train_loss": round(tot / max(n, 1), 5), "valid_loss": round(v, 5)})
        improved = not (v >= best)  # NaN (no valid songs) counts as improved: keep the last
        if improved:
            best, bad = (v if v == v else best), 0
            if ctx.is_main:
                weights = {k: t.detach().cpu().numpy() for k, t in net.state_dict().items()}
                model = SongModel(plan, accomp, config.melody, weights, styles=styles)
                model.save(stem, meta={"training": {"epochs_done": epoch + 1, "best_valid_loss": v, "history": history,
                                                    "train_songs": len(train_songs), "valid_songs": len(valid_songs),
                                                    "crop_bars": config.crop_bars, "lr": config.lr,
                                                    "batch_size": config.batch_size, "world_size": ctx.world_size}})
        else:
            bad += 1
        log(f"epoch {epoch + 1}: train {tot / max(n, 1):.4f}  valid {v:.4f} nats/token" + ("  *" if improved else ""))
        if ctx.is_main:
            with atomic_path(optim_path) as tmp:
                torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "history": history, "epoch": epoch + 1,
                            "best": best, "bad": bad}, tmp)
        if bad >= config.patience:
            log(f"stopping: no improvement for {bad} epochs")
            break
    ctx.barrier()
    return stem, net
