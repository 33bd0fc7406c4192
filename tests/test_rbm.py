"""The RBM: exact quantities on tiny models, learning on structured data, checkpoints and resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from moodsong.corpora.corpus import Corpus
from moodsong.errors import BadCheckpointError, MoodsongError
from moodsong.models.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from moodsong.models.generate import generate_roll
from moodsong.models.rbm import RBM, RBMConfig
from moodsong.representation.pianoroll import PianoRollConfig, held
from moodsong.training.rbm import TrainConfig, train_rbm

TINY = PianoRollConfig(lowest_pitch=60, num_pitches=4)  # width 8


def tiny_rbm(T=1, H=3, seed=0) -> RBM:
    torch.manual_seed(seed)
    m = RBM(RBMConfig(num_timesteps=T, num_hidden=H, pianoroll=TINY))
    m.W.normal_(0, 1)
    m.b_visible.normal_(0, 1)
    m.b_hidden.normal_(0, 1)
    return m


def all_states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def test_free_energy_and_partition_match_brute_force():
    m = tiny_rbm()
    V, H = m.W.shape
    vs, hs = all_states(V), all_states(H)
    energy = -(vs @ m.b_visible)[:, None] - (hs @ m.b_hidden)[None, :] - vs @ m.W @ hs.t()
    logZ = torch.logsumexp(-energy.flatten(), 0)
    assert abs(m.log_partition_exact() - float(logZ)) < 1e-4
    fe = -torch.logsumexp(-energy, 1)
    torch.testing.assert_close(m.free_energy(vs), fe, atol=1e-4, rtol=1e-5)


def test_pseudo_log_likelihood_matches_its_definition():
    m = tiny_rbm()
    v = all_states(8)[torch.tensor([0, 5, 77, 255, 130])]
    expected = torch.zeros(v.shape[0])
    for i in range(8):
        flipped = v.clone()
        flipped[:, i] = 1 - flipped[:, i]
        expected += torch.nn.functional.logsigmoid(m.free_energy(flipped) - m.free_energy(v))
    torch.testing.assert_close(m.pseudo_log_likelihood(v, chunk=3), expected, atol=1e-4, rtol=1e-4)


def structured_corpus(n_songs=12, steps=40, seed=0) -> Corpus:
    """Two alternating chord shapes: strong structure an RBM can learn."""
    rng = np.random.default_rng(seed)
    shapes = [np.array([1, 0, 1, 0]), np.array([0, 1, 0, 1])]
    rolls = []
    for _ in range(n_songs):
        r = np.zeros((steps, 8), np.uint8)
        for t in range(steps):
            shape = shapes[(t // 2 + rng.integers(2)) % 2]
            r[t, :4] = shape
            r[t, 4:] = shape if t % 2 == 0 else 0
        rolls.append(r)
    return Corpus([f"s{i}" for i in range(n_songs)], rolls, TINY)


def data_and_noise(corpus):
    """The corpus's 2-step windows and as many uniform-noise windows (fixed seed)."""
    data = torch.tensor(corpus.windows(2), dtype=torch.float32)
    return data, torch.bernoulli(torch.full_like(data, 0.5), generator=torch.Generator().manual_seed(1))


def pll_and_gap(model, data, noise):
    """Mean pseudo-log-likelihood of the data, and how much lower its free energy is than the noise's."""
    pll = float(model.pseudo_log_likelihood(data).mean())
    return pll, float(model.free_energy(noise).mean() - model.free_energy(data).mean())


def test_training_raises_pll_and_separates_data_from_noise(tmp_path):
    corpus = structured_corpus()
    data, noise = data_and_noise(corpus)
    torch.manual_seed(0)
    pll0, gap0 = pll_and_gap(RBM(RBMConfig(2, 16, TINY)), data, noise)
    tc = TrainConfig(lr=0.05, batch_size=10, epochs=60, validation_fraction=0.0, eval_every=60, checkpoint_every=60)
    model, history = train_rbm(corpus, tmp_path / "run", RBMConfig(2, 16, TINY), tc, progress=False)
    pll1, gap1 = pll_and_gap(model, data, noise)
    assert pll1 > pll0 + 3.0  # nats per 16-bit window
    assert gap1 > gap0 + 5.0  # data became much more probable than noise
    assert len(history) == 60


def test_cd_update_has_the_right_sign():
    m = tiny_rbm(T=1, H=4)
    v = torch.tensor([[1.0, 0, 1, 0, 1, 0, 1, 0]] * 20)
    g = torch.Generator().manual_seed(0)
    fe0 = float(m.free_energy(v[:1]))
    for _ in range(50):
        m.cd_update(v, 0.1, k=1, generator=g)
    assert float(m.free_energy(v[:1])) < fe0 - 1.0


def test_persistent_cd_and_cd_k_learn_too(tmp_path):
    corpus = structured_corpus()
    data = torch.tensor(corpus.windows(2), dtype=torch.float32)
    for kw in ({"persistent": True}, {"cd_k": 3}):
        tc = TrainConfig(lr=0.05, batch_size=10, epochs=40, validation_fraction=0.0, eval_every=40, checkpoint_every=40,
                         **kw)
        torch.manual_seed(0)
        pll0 = float(RBM(RBMConfig(2, 16, TINY)).pseudo_log_likelihood(data).mean())
        model, _ = train_rbm(corpus, tmp_path / str(kw), RBMConfig(2, 16, TINY), tc, progress=False)
        assert float(model.pseudo_log_likelihood(data).mean()) > pll0 + 3.0, kw


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    corpus = structured_corpus()
    mc = RBMConfig(2, 8, TINY)
    base = dict(lr=0.05, batch_size=7, validation_fraction=0.2, eval_every=1, checkpoint_every=3, seed=3)
    full, _ = train_rbm(corpus, tmp_path / "full", mc, TrainConfig(epochs=6, **base), progress=False)
    train_rbm(corpus, tmp_path / "part", mc, TrainConfig(epochs=3, **base), progress=False)
    resumed, history = train_rbm(corpus, tmp_path / "part", mc, TrainConfig(epochs=6, **base), resume=True,
                                 progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(MoodsongError, match="already holds"):
        train_rbm(corpus, tmp_path / "full", mc, TrainConfig(epochs=6, **base), progress=False)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    m = tiny_rbm(T=2, H=5)
    save_checkpoint(m, tmp_path / "model", epoch=4)
    loaded, meta, _ = load_checkpoint(tmp_path / "model.json")
    assert meta["epoch"] == 4 and loaded.config == m.config
    for a, b in zip(m.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    weights, cfg = checkpoint_paths(tmp_path / "model")
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(BadCheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "model")
    weights.write_bytes(good)
    cfg.write_text(cfg.read_text()[:10])
    with pytest.raises(BadCheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "model")
    with pytest.raises(BadCheckpointError, match="no such"):
        load_checkpoint(tmp_path / "other")


def test_sampling_gives_notes_in_range_and_is_reproducible(tmp_path):
    corpus = structured_corpus()
    tc = TrainConfig(lr=0.05, batch_size=10, epochs=40, validation_fraction=0.0, eval_every=40, checkpoint_every=40)
    model, _ = train_rbm(corpus, tmp_path / "run", RBMConfig(2, 16, TINY), tc, progress=False)
    a = generate_roll(model, 33, seed=5, burn_in=50)
    b = generate_roll(model, 33, seed=5, burn_in=50)
    assert a.shape == (33, 8) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert held(a).sum() > 0 and set(np.unique(a)) <= {0, 1}
    # the learned structure shows: sounding steps are mostly one of the two chord shapes
    rows = [tuple(r) for r in held(a) if r.any()]
    assert sum(r in ((1, 0, 1, 0), (0, 1, 0, 1)) for r in rows) / len(rows) > 0.6


def test_clamped_gibbs_keeps_the_context_and_continuation_follows_it():
    m = tiny_rbm(T=4, H=6)
    mask = torch.zeros(1, 32, dtype=torch.bool)
    mask[0, :16] = True
    values = torch.bernoulli(torch.full((1, 32), 0.5), generator=torch.Generator().manual_seed(2))
    v, _ = m.gibbs(torch.zeros(1, 32), 20, clamp_mask=mask, clamp_values=values,
                   generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(v[0, :16], values[0, :16])
    # a model that copies step t to t+1 continues a primer's held pitch
    copy = RBM(RBMConfig(num_timesteps=2, num_hidden=4, pianoroll=TINY))
    copy.W.zero_()
    copy.b_visible.fill_(-6.0)
    copy.b_hidden.fill_(-6.0)
    for p in range(4):  # hidden unit p ties pitch p's held bit in both steps
        copy.W[p, p] = copy.W[8 + p, p] = 12.0
    primer = np.zeros((2, 8), np.uint8)
    primer[:, 2] = 1
    out = copy.generate_roll(6, primer=primer, overlap=1, burn_in=10, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 8)
    assert held(out)[:, 2].all()  # the primer's pitch carries through every new window
