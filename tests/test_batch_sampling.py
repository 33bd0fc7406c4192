"""Batched sampling (WaveNet-NADE, RNN-RBM): the same pieces as one at a time, and the exact distribution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE


@pytest.fixture
def model():
    torch.manual_seed(0)
    rep = {"kind": "note-state", "lowest_pitch": 60, "num_pitches": 6, "steps_per_quarter": 4}
    m = WaveNetNADE(WaveNetConfig(num_visible=12, channels=8, skip_channels=16, dilations=(1, 2, 4), nade_hidden=10,
                                  cond_dim=4, representation=rep))
    with torch.no_grad():  # bigger weights than the initialisation, so that pitches depend on each other
        for p in m.parameters():
            p.mul_(3.0)
    return m.eval()


def old_nade_sample(m, b, c, temperature, generator):
    """The torch pitch loop the numpy one replaced (moodsong 0.1.0), as the reference."""
    a = c.clone()
    v = torch.zeros_like(b)
    for i in range(b.shape[1]):
        logit = b[:, i] + torch.sigmoid(a) @ m.nade_V[i]
        vi = torch.bernoulli(torch.sigmoid(logit / temperature), generator=generator)
        v[:, i] = vi
        a = a + vi[:, None] * m.nade_W[i]
    return v


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_nade_sample_draws_what_the_torch_loop_drew(model, temperature):
    b = torch.randn(50, 12) * 2
    c = torch.randn(50, 10)
    with torch.no_grad():
        want = old_nade_sample(model, b, c, temperature, torch.Generator().manual_seed(5))
    got = model.nade_sample(b, c, temperature=temperature, generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, want)


def test_batch_rows_equal_one_at_a_time(model):
    cond = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.25] * 4])
    primer = (torch.rand(5, 12, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    gens = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
    batch = model.sample_batch(40, gens, primer=primer, cond=cond, temperature=0.9)
    assert batch.shape == (3, 40, 12)
    for r, s in enumerate((3, 4, 5)):
        g = torch.Generator().manual_seed(s)
        one = model.sample(40, primer=primer, cond=cond[r], temperature=0.9, generator=g)
        assert torch.equal(batch[r], one), r
        assert torch.equal(g.get_state(), gens[r].get_state())  # each generator advanced as by one piece alone
    assert not torch.equal(batch[0], batch[1])
    # generate_rolls: the batched generate_roll
    rolls = model.generate_rolls(16, [torch.Generator().manual_seed(s) for s in (3, 4)], cond=cond[0].numpy())
    for roll, s in zip(rolls, (3, 4)):
        one = model.generate_roll(16, cond=cond[0].numpy(), generator=torch.Generator().manual_seed(s))
        assert np.array_equal(roll, one)


def test_nade_samples_follow_the_exact_distribution(model):
    """Brute force: frequencies of all 2^V frames of a small NADE against exp(log p) from nade_log_prob."""
    V = 4
    m = WaveNetNADE(WaveNetConfig(num_visible=V, channels=4, skip_channels=4, dilations=(1,), nade_hidden=5))
    with torch.no_grad():
        m.nade_W.normal_(0, 2.0)
        m.nade_V.normal_(0, 2.0)
    b, c = torch.randn(1, V), torch.randn(1, 5)
    frames = torch.tensor(list(itertools.product([0.0, 1.0], repeat=V)))
    with torch.no_grad():
        p = m.nade_log_prob(frames, b.expand(len(frames), -1), c.expand(len(frames), -1)).exp().numpy()
    assert abs(p.sum() - 1) < 1e-5
    n = 40000
    draws = m.nade_sample(b.expand(n, -1), c.expand(n, -1), generator=torch.Generator().manual_seed(0)).numpy()
    counts = np.bincount((draws @ (2 ** np.arange(V)[::-1])).astype(int), minlength=2 ** V)
    chi2 = ((counts - n * p) ** 2 / np.maximum(n * p, 1e-9)).sum()
    assert chi2 < 45  # 15 degrees of freedom: P(chi2 > 45) < 1e-4


def test_rnnrbm_batch_rows_equal_one_at_a_time():
    from moodsong.models.rnnrbm import RNNRBM, RNNRBMConfig

    torch.manual_seed(0)
    m = RNNRBM(RNNRBMConfig(num_visible=10, num_hidden=8, num_recurrent=6, cond_dim=2)).eval()
    with torch.no_grad():
        m.W.normal_(0, 1.0)
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    primer = (torch.rand(4, 10, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    batch = m.sample_batch(12, gens, primer=primer, cond=cond, temperature=0.8, gibbs_steps=5)
    assert batch.shape == (2, 12, 10)
    for r, s in enumerate((7, 8)):
        g = torch.Generator().manual_seed(s)
        one = m.sample(12, primer=primer, cond=cond[r], temperature=0.8, gibbs_steps=5, generator=g)
        assert torch.equal(batch[r], one)
        assert torch.equal(g.get_state(), gens[r].get_state())
    # the one-at-a-time path draws what RNNRBM.gibbs (torch.bernoulli) draws
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    one = m.sample(3, cond=cond[0], gibbs_steps=4, generator=g1)
    with torch.no_grad():
        c = cond[0].reshape(1, 1, -1)
        u, state = m.rnn(torch.cat([torch.zeros(1, 1, 10), c], -1))
        bv = m.b_visible + m.W_uv(u[:, -1]) + m.cond_v(c[:, 0])
        bh = m.b_hidden + m.W_uh(u[:, -1]) + m.cond_h(c[:, 0])
        v, _ = m.gibbs(torch.zeros(1, 10), bv, bh, 4, generator=g2)
    assert torch.equal(one[0], v[0])
