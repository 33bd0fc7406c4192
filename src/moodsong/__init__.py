"""moodsong: tell it a feeling, it composes a piece that fits.

The package is organised by concern:

- :mod:`moodsong.pianoroll`  MIDI <-> note-state matrix (the data representation)
- :mod:`moodsong.corpus`     folders of MIDI, built-in music21 corpora, benchmark pickles; cached
- :mod:`moodsong.models`     the RBM and the temporal models
- :mod:`moodsong.train`      training loops, checkpoints, resume
- :mod:`moodsong.generate`   sampling fragments and joining them into pieces
- :mod:`moodsong.cli`        the ``moodsong`` command
"""

__version__ = "0.1.0"
