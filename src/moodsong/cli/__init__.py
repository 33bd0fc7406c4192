"""The ``moodsong`` command line.

Each concern registers its commands in its own module of this package
(``data``, ``train``, ``generate``, ...) on the group in :mod:`moodsong.cli.group`,
which turns user errors into one clear line.
"""

from __future__ import annotations

# Imported for their side effect: each module adds its commands to ``main``.
from moodsong.cli import audio, compose, data, emotion, evaluate, generate, serve, song, train, train_temporal  # noqa: F401
from moodsong.cli.group import main

__all__ = ["main"]
