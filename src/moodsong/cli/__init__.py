"""The ``moodsong`` command line.

Each concern registers its commands in its own module of this package
(``data``, ``train``, ``generate``, ...) on the group in :mod:`moodsong.cli.group`,
which turns user errors into one clear line.
"""

from __future__ import annotations

from moodsong.cli.group import main

# Imported for their side effect: each module adds its commands to ``main``.
from moodsong.cli import audio, compose, data, emotion, evaluate, generate, serve, song, train, train_temporal  # noqa: E402, F401, I001

__all__ = ["main"]
