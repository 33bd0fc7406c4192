"""Generation: load a model (shipped or trained) and make pieces with it.

:func:`generate_roll` is the one generation API for every model: each model class
has a ``generate_roll`` method (the RBM grows a piece window by window, the
temporal models sample frame by frame), and this module seeds it, calls it and
checks the result. :func:`generate_frames` is its frame-level twin for the
temporal models. Steps per bar come from the model's
:meth:`PianoRollConfig.steps_per_bar <moodsong.representation.pianoroll.PianoRollConfig.steps_per_bar>`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from moodsong.errors import MoodsongError
from moodsong.models.checkpoint import checkpoint_paths, load_checkpoint
from moodsong.models.rbm import RBM, bernoulli
from moodsong.representation.pianoroll import canonicalize

#: Models shipped inside the package: name -> file stem in ``moodsong/data`` (``<stem>.json`` + ``.safetensors``).
SHIPPED_MODELS = {
    # WaveNet-NADE on note-state frames (16th notes, 78 pitches): whole pieces; pop + EMOPIA piano
    "pop-wavenet": "pop_wavenet",
    "bach-rbm": "bach_rbm",  # the demo's RBM and hyperparameters, trained on the Bach chorales
    "jsb-wavenet": "jsb_wavenet",  # WaveNet-NADE on JSB Chorales (quarter notes, 88 keys): best benchmark NLL
    "jsb-rnnrbm": "jsb_rnnrbm",  # RNN-RBM on JSB Chorales
    # WaveNet-NADE on the other three benchmarks of Boulanger-Lewandowski et al. 2012 (eighth notes, 88 keys)
    "nottingham-wavenet": "nottingham_wavenet",  # folk tunes: melody and chords; valid NLL 2.033
    "musedata-wavenet": "musedata_wavenet",  # orchestral and keyboard classical music; valid NLL 5.287
    "piano-midi-wavenet": "piano_midi_wavenet",  # classical piano; valid NLL 6.680
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
        expected = checkpoint_paths(path)[1].name
        raise MoodsongError(f"{path}: no model checkpoint there (expected {expected}; shipped models: {names})")
    model, meta, _ = load_checkpoint(path, map_location=device)
    model.eval()
    return model, meta


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


def _sample(model: torch.nn.Module, method: str, num_steps: int, seed: int | None, temperature: float, **kwargs):
    """Call ``model.<method>(num_steps, generator=..., temperature=..., **kwargs)`` with a generator seeded by ``seed``
    (or at random) on the model's device."""
    if temperature <= 0:
        raise MoodsongError("temperature must be positive")
    if not hasattr(model, method):
        kind = getattr(model, "model_type", type(model).__name__)
        raise MoodsongError(f"a {kind} model cannot generate ({method} is missing)")
    gen = torch.Generator(device=next(iter(model.state_dict().values())).device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**62))
    return getattr(model, method)(num_steps, generator=gen, temperature=temperature, **kwargs)


def generate_roll(
    model: torch.nn.Module,
    num_steps: int,
    *,
    seed: int | None = None,
    temperature: float = 1.0,
    primer: np.ndarray | None = None,
    **kwargs,
) -> np.ndarray:
    """A note-state matrix of ``num_steps`` steps from any moodsong model: the one generation API.

    Every model has a ``generate_roll(num_steps, *, generator, temperature, primer, ...)`` method
    (:meth:`moodsong.models.rbm.RBM.generate_roll`, the temporal models' through
    :class:`~moodsong.models.frames.FrameModelMixin`); this seeds its generator, calls it and checks
    the result. Model-specific keywords pass through (``cond`` for conditioned temporal models,
    ``gibbs_steps`` for the RNN-RBM, ``burn_in``/``overlap``/``final`` for the RBM).

    Parameters
    ----------
    num_steps : int
        Steps to generate (the model's own grid: ``model.config.pianoroll.steps_per_bar()`` per 4/4 bar).
    primer : numpy.ndarray, optional
        A note-state matrix (in the model's :class:`PianoRollConfig`) the piece continues; not included.

    Raises
    ------
    MoodsongError
        If the model cannot generate, or produced no notes at all (never returns a silent piece silently).
    """
    roll = canonicalize(np.asarray(_sample(model, "generate_roll", num_steps, seed, temperature, primer=primer,
                                           **kwargs)))
    if roll[:, : roll.shape[1] // 2].sum() == 0:
        raise MoodsongError("the model produced only silence; try another --seed or a higher --temperature")
    return roll


def generate_frames(model: torch.nn.Module, num_steps: int, *, seed: int | None = None, temperature: float = 1.0,
                    primer: np.ndarray | None = None, cond: np.ndarray | torch.Tensor | None = None,
                    **kwargs) -> np.ndarray:
    """``num_steps`` new frames (``uint8``, ``(num_steps, V)``) from a temporal model (RNN-RBM, WaveNet-NADE).

    The frame-level twin of :func:`generate_roll`, for the benchmark representations.

    Parameters
    ----------
    primer : array, optional
        Frames ``(T0, V)`` to continue from (see :func:`moodsong.training.sequence.midi_to_frames`); not included.
    temperature : float
        > 1 more adventurous, < 1 more conservative.
    cond : array, optional
        Conditioning (emotion) vector of length ``cond_dim``.
    **kwargs
        To the model's ``sample`` (``gibbs_steps`` for the RNN-RBM: Gibbs sweeps per step; ``progress``).
    """
    return _sample(model, "generate_frames", num_steps, seed, temperature, primer=primer, cond=cond, **kwargs)
