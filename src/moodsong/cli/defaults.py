"""The library's config defaults for the CLI's options, read without importing the library.

``moodsong --help`` must stay fast and free of torch (``tests/test_lazy_imports.py``), but the
config dataclasses live beside the models and training loops that need torch. So the CLI reads
their defaults from the dataclasses' source: the values ``--help`` shows and the commands use are
the library's own, and the two cannot disagree (``tests/test_configs.py`` checks them against the
imported classes).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


@functools.cache
def defaults(module: str, cls: str) -> dict:
    """``{field: default}`` of dataclass ``cls`` in ``moodsong.<module>`` (literal defaults only).

    ``module`` is dotted below the package, e.g. ``"train"`` or ``"models.wavenet"``. Fields whose
    default is not a literal (``field(default_factory=...)``) are left out.
    """
    tree = ast.parse((_PACKAGE / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            out = {}
            for st in node.body:
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                    try:
                        out[st.target.id] = ast.literal_eval(st.value)
                    except ValueError:
                        pass
            return out
    raise LookupError(f"no class {cls} in moodsong.{module}")
