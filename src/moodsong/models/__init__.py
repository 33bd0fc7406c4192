"""Music models. Each file holds one model, readable top to bottom.

- :mod:`moodsong.models.rbm`  the RBM over piano-roll windows (the demo's model, fixed)
"""

from .rbm import RBM, RBMConfig

__all__ = ["RBM", "RBMConfig"]
