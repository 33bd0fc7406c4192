"""Music models. Each file holds one model, readable top to bottom.

- :mod:`moodsong.models.rbm`              the RBM over piano-roll windows (the demo's model, fixed),
  and the maths every binary RBM shares (free energy, exact log Z, CD statistics)
- :mod:`moodsong.models.conditional_rbm`  an RBM whose biases depend on an emotion condition
- :mod:`moodsong.models.rnnrbm`           RNN-RBM: a recurrent state sets an RBM's biases per step
- :mod:`moodsong.models.wavenet`          WaveNet-NADE: dilated causal CNN over frames, NADE per frame
- :mod:`moodsong.models.frames`           frame representations shared by the temporal models
- :mod:`moodsong.models.sparse_cd`        the fused sparse CD kernel (numba) that trains the RBM on a CPU

:data:`MODELS` is the one registry of model types: a checkpoint names its model by
``model_type`` and :func:`build_model` makes an untrained one from the stored config.
"""

from __future__ import annotations

from torch import nn

from moodsong.errors import MoodsongError
from moodsong.models.conditional_rbm import ConditionalRBM, ConditionalRBMConfig
from moodsong.models.rbm import RBM, RBMConfig
from moodsong.models.rnnrbm import RNNRBM, RNNRBMConfig
from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE

__all__ = [
    "RBM", "RBMConfig", "ConditionalRBM", "ConditionalRBMConfig", "RNNRBM", "RNNRBMConfig", "WaveNetNADE",
    "WaveNetConfig", "MODELS", "TEMPORAL_MODELS", "build_model", "register_model",
]

#: model_type -> (model class, config class with ``from_dict``).
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    cls.model_type: (cls, cfg)
    for cls, cfg in ((RBM, RBMConfig), (ConditionalRBM, ConditionalRBMConfig), (RNNRBM, RNNRBMConfig),
                     (WaveNetNADE, WaveNetConfig))
}
#: The whole-piece models (``moodsong train-seq``): they generate frames, not windows.
TEMPORAL_MODELS = ("wavenet", "rnnrbm")


def register_model(cls: type[nn.Module], config_cls: type) -> None:
    """Make a new model type known to checkpoints (``cls.model_type``; ``config_cls.from_dict`` reads its config)."""
    MODELS[cls.model_type] = (cls, config_cls)


def build_model(model_type: str, config: dict | None = None) -> nn.Module:
    """An untrained model of ``model_type`` from a config dict (missing keys take the config's defaults).

    Raises
    ------
    MoodsongError
        If ``model_type`` is not registered.
    """
    if model_type not in MODELS:
        raise MoodsongError(f"unknown model type {model_type!r} (known: {', '.join(MODELS)})")
    cls, cfg = MODELS[model_type]
    return cls(cfg.from_dict(config or {}))
