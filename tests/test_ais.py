"""AIS estimates of RBM partition functions against exact enumeration."""

from __future__ import annotations

import math

import pytest
import torch

from moodsong.evaluation.ais import ais_log_partition, default_betas, exact_log_partition, free_energy

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # thousands of tiny sequential ops


def _tiny(seed, V, H, n=None, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    shape_v = (V,) if n is None else (n, V)
    shape_h = (H,) if n is None else (n, H)
    return (torch.randn(V, H, generator=g, dtype=torch.float64) * scale,
            torch.randn(*shape_v, generator=g, dtype=torch.float64),
            torch.randn(*shape_h, generator=g, dtype=torch.float64))


def test_exact_enumeration_agrees_whichever_layer_is_enumerated():
    W, bv, bh = _tiny(0, 6, 9)
    by_hidden = exact_log_partition(W, bv, bh)  # H > V: enumerates the visible layer
    # the transposed RBM has the same Z, enumerated over the other layer
    by_visible = exact_log_partition(W.t(), bh, bv)
    assert torch.allclose(by_hidden, by_visible)
    # and both match a brute-force sum over all joint states
    states_v = ((torch.arange(64)[:, None] >> torch.arange(6)) & 1).double()
    states_h = ((torch.arange(512)[:, None] >> torch.arange(9)) & 1).double()
    neg_energy = states_v @ bv[:, None] + (states_h @ bh)[None] + states_v @ W @ states_h.t()
    assert math.isclose(float(torch.logsumexp(neg_energy.flatten(), 0)), float(by_hidden[0]), rel_tol=1e-10)


def test_free_energy_marginalises_the_hidden_layer():
    W, bv, bh = _tiny(1, 5, 4)
    v = torch.tensor([[1.0, 0, 1, 1, 0]], dtype=torch.float64)
    states_h = ((torch.arange(16)[:, None] >> torch.arange(4)) & 1).double()
    brute = torch.logsumexp((v @ bv) + states_h @ bh + (v @ W @ states_h.t())[0], 0)
    assert torch.allclose(-free_energy(v, W, bv, bh), brute)


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_ais_matches_exact_partition_function(scale):
    W, bv, bh = _tiny(2, 12, 10, n=4, scale=scale)
    exact = exact_log_partition(W, bv, bh)
    res = ais_log_partition(W, bv, bh, num_chains=200, betas=1000, generator=torch.Generator().manual_seed(0))
    assert res.log_z.shape == (4,)
    assert torch.all(res.log_z_stderr > 0)
    assert torch.allclose(res.log_z, exact, atol=0.05), (res.log_z, exact)
    # the reported error is an honest scale for the actual error
    assert torch.all((res.log_z - exact).abs() < 6 * res.log_z_stderr + 0.01)


def test_ais_single_rbm_and_custom_base():
    W, bv, bh = _tiny(3, 16, 8, scale=0.7)
    exact = exact_log_partition(W, bv, bh)
    res = ais_log_partition(W, bv, bh, num_chains=100, betas=300,
                            base_visible_bias=torch.zeros(16, dtype=torch.float64),
                            generator=torch.Generator().manual_seed(1))
    assert res.log_z.shape == (1,)
    assert abs(float(res.log_z[0] - exact[0])) < 0.1


def test_betas_schedule():
    b = default_betas(1000)
    assert len(b) == 1000 and b[0] == 0 and b[-1] == 1 and torch.all(b[1:] > b[:-1])


def test_ais_on_the_plain_rbm_class():
    from moodsong.models.rbm import RBM, RBMConfig
    from moodsong.representation.pianoroll import PianoRollConfig

    torch.manual_seed(0)
    rbm = RBM(RBMConfig(num_timesteps=1, num_hidden=8, pianoroll=PianoRollConfig(60, 6, 4)))
    with torch.no_grad():
        rbm.W.normal_(0, 1.0)
        rbm.b_visible.normal_(0, 1.0)
        rbm.b_hidden.normal_(0, 1.0)
    res = ais_log_partition(rbm.W.double(), rbm.b_visible.double(), rbm.b_hidden.double(), num_chains=100, betas=500,
                            generator=torch.Generator().manual_seed(0))
    assert abs(float(res.log_z[0]) - rbm.log_partition_exact()) < 0.05
