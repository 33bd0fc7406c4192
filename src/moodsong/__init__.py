"""moodsong: tell it a feeling, it composes a song that fits.

The package is organised by concern, in the order the data flows:

- :mod:`moodsong.pianoroll`, :mod:`moodsong.sources`, :mod:`moodsong.corpus`, :mod:`moodsong.shards`:
  MIDI <-> note-state matrices, finding and parsing inputs, corpora and their caches
- :mod:`moodsong.models`: the RBM and the temporal models (one registry, ``MODELS``)
- :mod:`moodsong.train`, :mod:`moodsong.train_temporal`, :mod:`moodsong.generate`: training and sampling
- :mod:`moodsong.song`: songs (plan, melody, accompaniment, form) learned from POP909
- :mod:`moodsong.emotion`: text, voice and music -> emotion
- :mod:`moodsong.chords`, :mod:`moodsong.audio`, :mod:`moodsong.pictures`, :mod:`moodsong.outputs`: analysis
  and rendering
- :mod:`moodsong.compose`: feeling -> song, the whole pipeline
- :mod:`moodsong.cli`, :mod:`moodsong.web`: the ``moodsong`` command and the web server

The public API below is imported on first use, so ``import moodsong`` stays light. The pipeline
itself is :func:`moodsong.compose.compose` (the module has the function's name, so the function is
not re-exported here: importing the module would replace it)::

    >>> from moodsong.compose import compose                                 # doctest: +SKIP
    >>> import moodsong                                                      # doctest: +SKIP
    >>> result = compose(moodsong.ComposeRequest(prompt="hope and wonder", out_dir="songs"))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public names and the modules that define them (loaded lazily: torch, music21 and the models
#: are not imported until a name that needs them is used).
_PUBLIC = {
    "ComposeRequest": "moodsong.compose",
    "ComposeResult": "moodsong.compose",
    "MoodsongError": "moodsong.errors",
    "load_model": "moodsong.generate",
    "SongModel": "moodsong.song.model",
    "SongSpec": "moodsong.song.model",
    "analyze_text": "moodsong.emotion.text",
    "MusicEmotionEstimator": "moodsong.emotion.music",
    "write_piece": "moodsong.outputs",
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
