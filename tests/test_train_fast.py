"""The fused sparse CD kernel (moodsong.models.sparse_cd) and train_rbm's fast path (per-song and shuffled)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_rbm import TINY, data_and_noise, pll_and_gap, structured_corpus

from moodsong.corpora.corpus import Corpus
from moodsong.errors import MoodsongError
from moodsong.models.checkpoint import load_checkpoint
from moodsong.models.rbm import RBM, RBMConfig, cd_statistics
from moodsong.models.sparse_cd import GOLDEN, SparseCD, splitmix64_key
from moodsong.training.rbm import TrainConfig, train_rbm

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix64(key: int, start: int, n: int) -> np.ndarray:
    """SplitMix64 draws start..start+n-1 as uint64, re-derived in numpy uint64 arithmetic."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + np.arange(start, start + n, dtype=np.uint64) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniforms(key: int, start: int, n: int) -> np.ndarray:
    """The draws as float32 uniforms (top 24 bits)."""
    return (mix64(key, start, n) >> np.uint64(40)).astype(np.float32) / np.float32(2**24)


def dense_cd(v0, W, b, c, lr, k, key, ctr, chains=None):
    """RBM's CD statistics (moodsong.models.rbm.cd_statistics), dense, in float64, with the kernel's draws.

    Returns the new (W, b, c), vk and counter. With ``chains`` (persistent CD) the negative phase starts from
    those rows' hidden sample instead.
    """
    B = v0.shape[0]
    at = [ctr]

    def sample(p):  # the kernel's uniforms, in cd_statistics' draw order (h0, v1, h1, ...)
        u = torch.from_numpy(uniforms(key, at[0], p.numel()).reshape(p.shape).astype(np.float64))
        at[0] += p.numel()
        return (u < p).to(p.dtype)

    def f64(a):
        return torch.from_numpy(np.asarray(a, np.float64))

    W, b, c, v0 = f64(W), f64(b), f64(c), f64(v0)
    ph0, vk, phk = cd_statistics(W, b, c, v0, sample, k=k, chains=None if chains is None else f64(chains))
    s = lr / B
    W, b, c = W + s * (v0.T @ ph0 - vk.T @ phk), b + s * (v0.sum(0) - vk.sum(0)), c + s * (ph0.sum(0) - phk.sum(0))
    return W.numpy(), b.numpy(), c.numpy(), vk.numpy(), at[0]


def random_problem(seed=0, n=23, V=300, H=20):
    rng = np.random.default_rng(seed)
    data = (rng.random((n, V)) < 0.05).astype(np.uint8)
    W = (rng.standard_normal((V, H)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(V) - 2.5).astype(np.float32)
    c = rng.standard_normal(H).astype(np.float32)
    return data, W, b, c


@pytest.mark.parametrize("k,persistent", [(1, False), (2, False), (1, True)])
def test_kernel_equals_dense_cd_with_the_same_uniforms(k, persistent):
    data, W, b, c = random_problem()
    bounds = [0, 10, 23]  # two updates: the second sees the first's weights
    fast = SparseCD(data, bounds, seed=5, persistent_rows=14 if persistent else 0)
    chains = fast.dense_chains().astype(np.float64) if persistent else None
    Wf, bf, cf = W.copy(), b.copy(), c.copy()
    err = fast.epoch(Wf, bf, cf, 0.1, k, err_every=1)
    key, ctr = int(fast.key), 14 * data.shape[1] if persistent else 0  # the chains' initial coin flips came first
    Wd, bd, cd, errs = W, b, c, []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        v0 = data[lo:hi].astype(np.float64)
        B = hi - lo
        Wd, bd, cd, vk, ctr = dense_cd(v0, Wd, bd, cd, 0.1, k, key, ctr, None if chains is None else chains[:B])
        if chains is not None:
            chains[:B] = vk
        errs.append(np.abs(v0 - vk).mean())
    if persistent:
        np.testing.assert_array_equal(fast.dense_chains(), chains)
        assert 0.3 < chains[13].mean() < 0.7  # a chain no batch reached is still its initial coin flips
    np.testing.assert_allclose(Wf, Wd, atol=1e-5)
    np.testing.assert_allclose(bf, bd, atol=1e-5)
    np.testing.assert_allclose(cf, cd, atol=1e-5)
    assert int(fast.counter[0]) == ctr
    assert err == pytest.approx(np.mean(errs))
    assert not np.array_equal(Wf, W)


@pytest.mark.parametrize("persistent", [False, True])
def test_shuffled_kernel_equals_dense_cd_with_the_same_permutation(persistent):
    data, W, b, c = random_problem(2)
    n, bounds = data.shape[0], [0, 10, 20, 23]  # batches of 10 over each epoch's order, the last one short
    fast = SparseCD(data, bounds, seed=7, persistent_rows=10 if persistent else 0, shuffle=True)
    chains = fast.dense_chains().astype(np.float64) if persistent else None
    Wf, bf, cf = W.copy(), b.copy(), c.copy()
    key, ctr = int(fast.key), 10 * data.shape[1] if persistent else 0
    Wd, bd, cd = W, b, c
    orders = []
    for _ in range(2):  # two epochs
        fast.epoch(Wf, bf, cf, 0.1, 1)
        # each epoch: n draws, windows in the order of their values
        order = np.argsort(mix64(key, ctr, n), kind="stable")
        ctr += n
        orders.append(order)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            Wd, bd, cd, vk, ctr = dense_cd(data[order[lo:hi]].astype(np.float64), Wd, bd, cd, 0.1, 1, key, ctr,
                                           None if chains is None else chains[: hi - lo])
            if chains is not None:
                chains[: hi - lo] = vk
    assert sorted(orders[0]) == list(range(n)) and not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], np.arange(n))
    np.testing.assert_allclose(Wf, Wd, atol=1e-5)
    np.testing.assert_allclose(bf, bd, atol=1e-5)
    np.testing.assert_allclose(cf, cd, atol=1e-5)
    assert int(fast.counter[0]) == ctr
    if persistent:
        np.testing.assert_array_equal(fast.dense_chains(), chains)


def test_kernel_stream_state_round_trips_and_continues():
    data, W, b, c = random_problem(1)
    one = SparseCD(data, [0, 12, 23], seed=9)
    W1, b1, c1 = W.copy(), b.copy(), c.copy()
    one.epoch(W1, b1, c1, 0.05)
    saved = one.state()
    one.epoch(W1, b1, c1, 0.05)
    two = SparseCD(data, [0, 12, 23], seed=123, state=saved)  # the stored state wins over the seed
    W2, b2, c2 = W.copy(), b.copy(), c.copy()
    SparseCD(data, [0, 12, 23], seed=9).epoch(W2, b2, c2, 0.05)
    two.epoch(W2, b2, c2, 0.05)
    np.testing.assert_array_equal(W1, W2)
    np.testing.assert_array_equal(b1, b2)


def test_uniforms_are_uniform_and_bernoulli_frequencies_match():
    key = splitmix64_key(0)
    u = uniforms(key, 0, 200_000)
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert u.min() >= 0.0 and u.max() < 1.0
    hist = np.bincount((u * 10).astype(int), minlength=10) / len(u)
    np.testing.assert_allclose(hist, 0.1, atol=0.005)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # neighbouring counters are independent
    assert splitmix64_key(1) != key
    # The kernel's Bernoulli draws: zero weights and hidden biases make every visible unit's p = sigmoid(b).
    V, H, n = 64, 4, 400
    p = np.linspace(0.02, 0.98, V)
    b = np.log(p / (1 - p)).astype(np.float32)
    data = np.zeros((n, V), np.uint8)
    fast = SparseCD(data, [0, n], seed=2)  # one batch: b moves once, at its end
    W, c = np.zeros((V, H), np.float32), np.full(H, -50.0, np.float32)  # hidden units off
    bb = b.copy()
    # the update moves b by lr/B * (0 - sum vk): with lr = -B that is + sum vk, the count of each unit's ones
    fast.epoch(W, bb, c, lr=-float(n), k=1)
    freq = (bb - b) / n
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-3)  # within 4 standard errors
    assert abs((freq - p).mean()) < 0.01  # and unbiased overall


def per_song(seed=3, order="per-song", **kw):
    return dict(lr=0.05, batch_size=7, validation_fraction=0.2, eval_every=1, checkpoint_every=3, seed=seed,
                order=order, device="cpu", **kw)


@pytest.mark.parametrize("order", ["per-song", "shuffled"])
def test_fast_path_learns_like_the_torch_path(tmp_path, order):
    corpus = structured_corpus()
    data, noise = data_and_noise(corpus)
    torch.manual_seed(0)
    pll0, gap0 = pll_and_gap(RBM(RBMConfig(2, 16, TINY)), data, noise)
    tc = TrainConfig(lr=0.05, batch_size=10, epochs=60, validation_fraction=0.0, eval_every=60, checkpoint_every=60,
                     order=order, device="cpu")
    model, history = train_rbm(corpus, tmp_path / "run", RBMConfig(2, 16, TINY), tc, progress=False)
    _, _, extra = load_checkpoint(tmp_path / "run" / "model")
    assert "sparse_cd" in extra  # the fast path ran
    pll1, gap1 = pll_and_gap(model, data, noise)
    assert pll1 > pll0 + 3.0
    assert gap1 > gap0 + 5.0
    err = np.array([h["train_sample_error"] for h in history])
    assert len(err) == 60 and np.all((err >= 0) & (err < 1))
    assert err[-10:].mean() < err[:5].mean() / 3  # negative samples come to look like the data

    torch_run = dataclasses.replace(tc, backend="torch")  # the torch backend on the same run
    slow, slow_history = train_rbm(corpus, tmp_path / "torch", RBMConfig(2, 16, TINY), torch_run, progress=False)
    assert "sparse_cd" not in load_checkpoint(tmp_path / "torch" / "model")[2]
    slow_err = np.array([h["train_sample_error"] for h in slow_history])
    assert abs(err[-20:].mean() - slow_err[-20:].mean()) < 0.03
    assert abs(pll1 - float(slow.pseudo_log_likelihood(data).mean())) < 1.0


@pytest.mark.parametrize("persistent,order", [(False, "per-song"), (True, "per-song"), (False, "shuffled"),
                                              (True, "shuffled")])
def test_fast_path_resume_reproduces_an_uninterrupted_run_and_seed_reproduces(tmp_path, persistent, order):
    corpus = structured_corpus()
    mc = RBMConfig(2, 8, TINY)

    def run(name, epochs, seed=3, resume=False):
        return train_rbm(corpus, tmp_path / name, mc,
                         TrainConfig(epochs=epochs, **per_song(seed, order, persistent=persistent)),
                         progress=False, resume=resume)

    full, hist_full = run("full", 6)
    again, _ = run("again", 6)
    other, _ = run("other", 6, seed=4)
    run("part", 3)
    resumed, history = run("part", 6, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert [r["train_sample_error"] for r in history] == [r["train_sample_error"] for r in hist_full]
    for a, b, c in zip(full.state_dict().values(), resumed.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert not torch.equal(full.W, other.W)
    if persistent:
        a, b = (load_checkpoint(tmp_path / name / "model")[2]["chains"] for name in ("full", "part"))
        assert a.shape == (7, 16) and torch.equal(a, b)


def test_fast_path_persistent_cd_learns(tmp_path):
    corpus = structured_corpus()
    data = torch.tensor(corpus.windows(2), dtype=torch.float32)
    tc = TrainConfig(lr=0.05, batch_size=10, epochs=40, validation_fraction=0.0, eval_every=40, checkpoint_every=40,
                     persistent=True, order="per-song", device="cpu")
    torch.manual_seed(0)
    pll0 = float(RBM(RBMConfig(2, 16, TINY)).pseudo_log_likelihood(data).mean())
    model, _ = train_rbm(corpus, tmp_path / "pcd", RBMConfig(2, 16, TINY), tc, progress=False)
    assert "sparse_cd" in load_checkpoint(tmp_path / "pcd" / "model")[2]
    assert float(model.pseudo_log_likelihood(data).mean()) > pll0 + 3.0


def test_backend_is_a_setting(tmp_path):
    corpus = structured_corpus()
    mc = RBMConfig(2, 8, TINY)
    tc = TrainConfig(epochs=2, batch_size=10, validation_fraction=0.0, order="per-song", device="cpu")
    for backend, kernel_ran in (("auto", True), ("sparse", True), ("torch", False)):
        train_rbm(corpus, tmp_path / backend, mc, dataclasses.replace(tc, backend=backend), progress=False)
        assert ("sparse_cd" in load_checkpoint(tmp_path / backend / "model")[2]) == kernel_ran, backend
    with pytest.raises(MoodsongError, match="unknown backend"):
        train_rbm(corpus, tmp_path / "bad", mc, dataclasses.replace(tc, backend="gpu"), progress=False)
    not_binary = Corpus(corpus.names, [r * 2 for r in corpus.rolls], corpus.config)  # not binary: the kernel refuses
    with pytest.raises(MoodsongError, match="backend 'sparse' cannot"):
        train_rbm(not_binary, tmp_path / "two", mc, dataclasses.replace(tc, backend="sparse"), progress=False)
