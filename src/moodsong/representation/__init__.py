"""Representation: how music is held in memory, below every other layer.

- :mod:`moodsong.representation.pianoroll`  MIDI <-> note-state matrices (the demo's 2 x 78 bits per step),
  reading and writing MIDI through symusic, windows of a roll
- :mod:`moodsong.representation.lines`      the top line (skyline) of polyphonic notes
- :mod:`moodsong.representation.chords`     chord and key recognition on notes (templates matched in numpy)
"""
