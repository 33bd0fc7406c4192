"""Corpora: finding, parsing and caching training material.

- :mod:`moodsong.corpora.sources`  inputs (files, folders, music21 corpora, split specs) and the parsing pool
- :mod:`moodsong.corpora.corpus`   cached piano-roll corpora for the RBM and the temporal models
- :mod:`moodsong.corpora.shards`   the same at scale: sharded, memory-mapped, built in parallel
- :mod:`moodsong.corpora.pop909`   POP909 songs on a sixteenth-note grid, with chords, key and the song split
- :mod:`moodsong.corpora.songs`    songs (melody, chords per bar, key) from POP909 or any MIDI folder
"""
