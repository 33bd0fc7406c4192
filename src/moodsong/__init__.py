"""moodsong: tell it a feeling, it composes a song that fits.

The package is grouped by concern, in the order the data flows; a module imports only its own
layer and the layers above it in this list (``tests/test_layers.py`` checks it, and that nothing
forms a cycle):

1. :mod:`moodsong.errors`, :mod:`moodsong.fileio`: the error types and atomic writes
2. :mod:`moodsong.representation`: MIDI <-> note-state matrices, chord and key recognition
3. :mod:`moodsong.corpora`: finding and parsing inputs, cached corpora, POP909 and song corpora
4. :mod:`moodsong.models` (the RBM and the temporal models, one registry, checkpoints, sampling) and
   :mod:`moodsong.song` (plan, melody, accompaniment, form)
5. :mod:`moodsong.evaluation`: likelihoods, AIS, song metrics
6. :mod:`moodsong.training`: the training loops and the distributed plumbing
7. :mod:`moodsong.emotion` (text, voice and music -> emotion, steering) and :mod:`moodsong.render`
   (audio, pictures, lead sheets, a piece's files)
8. :mod:`moodsong.pipeline`: feeling -> song, the whole pipeline (:func:`compose`)
9. :mod:`moodsong.cli`, :mod:`moodsong.web`: the ``moodsong`` command and the web server

The public API below is imported on first use, so ``import moodsong`` stays light::

    >>> import moodsong                                                      # doctest: +SKIP
    >>> result = moodsong.compose(moodsong.ComposeRequest(prompt="hope and wonder", out_dir="songs"))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public names and the modules that define them (loaded lazily: torch, music21 and the models
#: are not imported until a name that needs them is used).
_PUBLIC = {
    "compose": "moodsong.pipeline",
    "ComposeRequest": "moodsong.pipeline",
    "ComposeResult": "moodsong.pipeline",
    "MoodsongError": "moodsong.errors",
    "load_model": "moodsong.models.generate",
    "SongModel": "moodsong.song.model",
    "SongSpec": "moodsong.song.model",
    "analyze_text": "moodsong.emotion.text",
    "MusicEmotionEstimator": "moodsong.emotion.music",
    "write_piece": "moodsong.render.outputs",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'moodsong' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
