"""Shared fixtures. Tests never need ../shared; those that use it skip cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Each test session gets its own corpus cache so tests never see a user's cache.
    monkeypatch.setenv("MOODSONG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (it is optional; users do not have it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """The web tests' model: a small untrained conditional RBM with sparse notes (real pipeline, little compute)."""
    import torch

    from moodsong.models.checkpoint import save_checkpoint
    from moodsong.models.conditional_rbm import ConditionalRBM, ConditionalRBMConfig

    model = ConditionalRBM(ConditionalRBMConfig(num_hidden=16))
    with torch.no_grad():
        model.b_visible.fill_(-3.5)  # ~3 % of note bits on
        model.W.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("model") / "crbm"
    save_checkpoint(model, path, dtype=torch.float16)
    return str(path)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: models of thousands of tiny sequential ops only lose from more."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
