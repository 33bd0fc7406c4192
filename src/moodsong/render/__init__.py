"""Rendering: what a person hears, sees and opens.

- :mod:`moodsong.render.audio`      MIDI -> audio (fluidsynth or the pip-only renderer), files, playback
- :mod:`moodsong.render.pictures`   piano-roll pictures
- :mod:`moodsong.render.leadsheet`  MusicXML lead sheets through music21
- :mod:`moodsong.render.outputs`    one place that writes a piece's files (MIDI, audio, picture, report)
"""
