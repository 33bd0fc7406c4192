"""Generation: sample fragments from a trained model and join them into whole pieces.

For the RBM a fragment is one window (15 steps by default). The demo ran one
Gibbs step from all-zeros, which mostly returned noise or silence; here every
chain starts from the model's own visible marginals (or from data), runs a
burn-in of many sweeps, and a piece grows window by window: each new window is
sampled with its first ``overlap`` steps clamped to the end of the piece so far,
so fragments join without seams.

Models with a ``generate_roll`` method (the temporal models) generate whole
pieces directly; :func:`generate_roll` dispatches on that.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .checkpoint import checkpoint_paths, load_checkpoint
from .errors import MoodsongError
from .models.rbm import RBM, bernoulli
from .pianoroll import PianoRollConfig, canonicalize

#: Models shipped inside the package: name -> file stem in ``moodsong/data`` (``<stem>.json`` + ``.safetensors``).
SHIPPED_MODELS = {
    "pop-wavenet": "pop_wavenet",  # WaveNet-NADE on note-state frames (16th notes, 78 pitches): whole pieces; pop + EMOPIA piano
    "bach-rbm": "bach_rbm",  # the demo's RBM and hyperparameters, trained on the Bach chorales
    "jsb-wavenet": "jsb_wavenet",  # WaveNet-NADE on JSB Chorales (quarter notes, 88 keys): best benchmark NLL
    "jsb-rnnrbm": "jsb_rnnrbm",  # RNN-RBM on JSB Chorales
}
#: The model ``moodsong generate`` uses when none is named: the best temporal model in the product's format.
DEFAULT_MODEL = "pop-wavenet"


def default_model_path() -> Path:
    """Path of the shipped default model's JSON config."""
    return shipped_model_path(DEFAULT_MODEL)


def shipped_model_path(name: str) -> Path:
    return Path(str(resources.files("moodsong") / "data" / f"{SHIPPED_MODELS[name]}.json"))


def load_model(path: str | os.PathLike | None = None, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint by path, a shipped model by name (see :data:`SHIPPED_MODELS`), or the default."""
    if path is None:
        path = default_model_path()
    elif str(path) in SHIPPED_MODELS:
        path = shipped_model_path(str(path))
    path = Path(path)
    if not checkpoint_paths(path)[1].exists():
        names = ", ".join(SHIPPED_MODELS)
        raise MoodsongError(f"{path}: no model checkpoint there (expected {checkpoint_paths(path)[1].name}; shipped models: {names})")
    model, meta, _ = load_checkpoint(path, map_location=device)
    model.eval()
    return model, meta


def pianoroll_config(model: torch.nn.Module) -> PianoRollConfig:
    return model.config.pianoroll


@torch.no_grad()
def sample_windows(
    model: RBM,
    n: int,
    *,
    burn_in: int = 200,
    init: torch.Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` independent fragments, each the end of a Gibbs chain of ``burn_in`` sweeps.

    Chains start at ``init`` (e.g. data windows) or, by default, at a draw from
    the visible biases' marginals, which is closer to the model than zeros.
    """
    V = model.config.num_visible
    if init is None:
        init = bernoulli(torch.sigmoid(model.b_visible).expand(n, V), generator)
    v, _ = model.gibbs(init, burn_in, generator=generator, temperature=temperature)
    return v


@torch.no_grad()
def rbm_piece(
    model: RBM,
    num_steps: int,
    *,
    overlap: int | None = None,
    burn_in: int = 200,
    temperature: float = 1.0,
    primer: np.ndarray | None = None,
    generator: torch.Generator | None = None,
    max_tries: int = 8,
    final: str = "mode",
) -> np.ndarray:
    """Grow a piece of ``num_steps`` steps window by window with clamped continuation.

    Parameters
    ----------
    overlap : int
        Steps of the previous window each new window is conditioned on
        (default: half a window).
    primer : ndarray, optional
        A note-state matrix the piece continues from (its last steps are kept as the start).
    max_tries : int
        A window that comes out silent is resampled up to this many times.
    final : {"mode", "sample"}
        ``mode`` keeps the notes whose probability in the last sweep is over
        one half, which drops the scattered one-step notes a raw sample has;
        ``sample`` keeps the raw Bernoulli sample (the demo's behaviour).
    """
    T = model.config.num_timesteps
    W = model.config.pianoroll.width
    overlap = T // 2 if overlap is None else overlap
    if not 0 <= overlap < T:
        raise ValueError(f"overlap must be in [0, {T})")
    device = model.W.device
    if primer is not None and primer.shape[0] > 0:
        piece = torch.as_tensor(np.asarray(primer[-T:], np.float32), device=device)
    else:
        piece = torch.zeros((0, W), device=device)
    start_len = piece.shape[0]
    while piece.shape[0] - start_len < num_steps:
        ctx = min(overlap, piece.shape[0])
        mask = torch.zeros((T, W), dtype=torch.bool, device=device)
        values = torch.zeros((T, W), device=device)
        if ctx:
            mask[:ctx] = True
            values[:ctx] = piece[-ctx:]
        for _ in range(max_tries):
            init = bernoulli(torch.sigmoid(model.b_visible), generator).view(T, W)
            init = torch.where(mask, values, init).view(1, -1)
            v, pv = model.gibbs(init, burn_in, generator=generator, temperature=temperature,
                                clamp_mask=mask.view(1, -1), clamp_values=values.view(1, -1))
            if final == "mode":
                v = torch.where(mask.view(1, -1), values.view(1, -1), (pv > 0.5).to(v.dtype))
            new = v.view(T, W)[ctx:]
            if new.sum() > 0:
                break
        piece = torch.cat([piece, new])
    out = piece[start_len : start_len + num_steps].cpu().numpy()
    return canonicalize(out)


def generate_roll(
    model: torch.nn.Module,
    num_steps: int,
    *,
    seed: int | None = None,
    temperature: float = 1.0,
    primer: np.ndarray | None = None,
    **kwargs,
) -> np.ndarray:
    """A note-state matrix of ``num_steps`` steps from any moodsong model.

    Raises
    ------
    MoodsongError
        If the model produced no notes at all (never returns a silent piece silently).
    """
    device = next(iter(model.state_dict().values())).device
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**62))
    if hasattr(model, "generate_roll"):
        roll = model.generate_roll(num_steps, generator=gen, temperature=temperature, primer=primer, **kwargs)
    elif isinstance(model, RBM):
        roll = rbm_piece(model, num_steps, generator=gen, temperature=temperature, primer=primer, **kwargs)
    else:
        raise MoodsongError(f"model type {getattr(model, 'model_type', type(model).__name__)} cannot generate")
    roll = canonicalize(np.asarray(roll))
    if roll[:, : roll.shape[1] // 2].sum() == 0:
        raise MoodsongError("the model produced only silence; try another --seed or a higher --temperature")
    return roll


def steps_per_bar(config: PianoRollConfig, beats_per_bar: int = 4) -> int:
    """Steps in one bar of ``beats_per_bar`` quarter notes."""
    return beats_per_bar * config.steps_per_quarter
