"""Data-parallel training: 2 processes (gloo, CPU) end where one process ends at the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from moodsong.corpora.corpus import Corpus
from moodsong.models.rbm import RBMConfig
from moodsong.representation.pianoroll import PianoRollConfig
from moodsong.training import distributed
from moodsong.training.rbm import TrainConfig, train_rbm
from moodsong.training.sequence import TemporalTrainConfig, train_sequence_model

RBM_CASES = {
    # 97 windows in batches of 10: the last batch (7) splits 3/4, exercising uneven shares
    # the torch backend everywhere: in one process too, so that it draws DDP's random stream
    "cd2": TrainConfig(batch_size=10, epochs=3, cd_k=2, device="cpu", eval_every=1, checkpoint_every=1,
                       backend="torch"),
    "pcd": TrainConfig(batch_size=10, epochs=3, cd_k=1, persistent=True, device="cpu", eval_every=1, checkpoint_every=2,
                       backend="torch"),
}
WAVENET = dict(channels=8, skip_channels=16, dilations=[1, 2, 4], nade_hidden=16, dropout=0.0)
WAVENET_TC = TemporalTrainConfig(epochs=2, batch_size=5, lr=3e-3, max_len=24, transpose=2, device="cpu")


def _corpus() -> Corpus:
    rng = np.random.default_rng(1)
    cfg = PianoRollConfig()
    rolls = [(rng.random((int(rng.integers(8, 60)), cfg.width)) < 0.08).astype(np.uint8) for _ in range(24)]
    return Corpus([f"p{i}" for i in range(len(rolls))], rolls, cfg)


def _pieces() -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [(rng.random((int(rng.integers(10, 40)), 88)) < 0.1).astype(np.float32) for _ in range(13)]


def _train_all(out: Path, rank: int) -> None:
    """The same three runs in every process; each process saves the weights it ends with."""
    for name, tc in RBM_CASES.items():
        model, _ = train_rbm(_corpus(), out / name, RBMConfig(num_timesteps=4, num_hidden=16), tc, progress=False,
                             overwrite=True)
        torch.save(model.state_dict(), out / f"{name}.rank{rank}.pt")
    model, _ = train_sequence_model("wavenet", _pieces(), [], out / "wavenet", WAVENET, WAVENET_TC, progress=False,
                                    overwrite=True)
    torch.save(model.state_dict(), out / f"wavenet.rank{rank}.pt")


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = distributed.init_from_env("cpu")
    assert ctx.world_size == world and ctx.rank == rank and ctx.backend == "gloo"
    try:
        _train_all(Path(out) / "ddp", rank)
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_training_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert distributed.current().world_size == 1  # the parent never joined a group
    _train_all(tmp_path / "single", 0)
    for name in [*RBM_CASES, "wavenet"]:
        r0 = torch.load(tmp_path / "ddp" / f"{name}.rank0.pt")
        r1 = torch.load(tmp_path / "ddp" / f"{name}.rank1.pt")
        one = torch.load(tmp_path / "single" / f"{name}.rank0.pt")
        for k in one:
            assert torch.equal(r0[k], r1[k]), f"{name}.{k}: ranks disagree"
            torch.testing.assert_close(r0[k], one[k], rtol=1e-4, atol=1e-5,
                                       msg=f"{name}.{k}: DDP differs from one process")
        # training moved the weights (a vacuous comparison would also pass)
        assert not torch.allclose(one[next(iter(one))], torch.zeros_like(one[next(iter(one))]))
    # only rank 0 wrote checkpoints (one set per run, no per-rank files from the library)
    assert sorted(p.name for p in (tmp_path / "ddp" / "cd2").iterdir()) == ["model.json", "model.safetensors"]
    assert (tmp_path / "ddp" / "wavenet" / "model.json").is_file()


def test_batch_slices_cover_the_batch_once():
    for world in (1, 2, 3, 8):
        for n in (0, 1, 7, 10, 101):
            parts = [distributed.DistContext(rank=r, world_size=world).batch_slice(n) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_single_process_context_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    ctx = distributed.init_from_env("cpu")
    assert not ctx.distributed and ctx.is_main
    t = torch.ones(3)
    assert torch.equal(ctx.all_reduce_(t), torch.ones(3))
    assert ctx.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.device_for(ctx, "cpu") == torch.device("cpu")


def test_distributed_cd_update_in_one_process_is_rbm_cd_update():
    """With one rank, the data-parallel update is bit-for-bit the model's own (same random draws)."""
    from moodsong.models.rbm import RBM

    torch.manual_seed(0)
    a = RBM(RBMConfig(num_timesteps=2, num_hidden=8))
    b = RBM(RBMConfig(num_timesteps=2, num_hidden=8))
    b.load_state_dict(a.state_dict())
    v = (torch.rand(12, a.config.num_visible) < 0.2).float()
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(3):
        na = a.cd_update(v, 0.05, k=2, generator=ga)
        nb = distributed.cd_update(b, v, 0.05, rows=(0, 12, 12), k=2, generator=gb)
        assert torch.equal(na, nb)
    for k, t in a.state_dict().items():
        torch.testing.assert_close(t, b.state_dict()[k], rtol=1e-5, atol=1e-7)


def test_wavenet_bf16_autocast_is_numerically_safe():
    """The mixed precision used on GPUs (bf16 autocast) keeps WaveNet-NADE's loss and gradients close to float32."""
    from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE

    torch.manual_seed(0)
    m = WaveNetNADE(WaveNetConfig(**WAVENET))
    v = (torch.rand(4, 40, 88) < 0.1).float()
    mask = torch.ones(4, 40, dtype=torch.bool)
    mask[1, 30:] = False
    loss32 = m.loss(v, mask)
    loss32.backward()
    g32 = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16 = m.loss(v, mask)
    loss16.backward()
    assert loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, loss32, rtol=1e-3, atol=0)
    for n, g in g32.items():
        g16 = dict(m.named_parameters())[n].grad
        assert g16.dtype == torch.float32
        assert (g16 - g).norm() <= 0.05 * g.norm() + 1e-8, n
