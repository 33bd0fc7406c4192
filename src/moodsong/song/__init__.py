"""The song model: a harmonic plan chosen for an emotion, a melody and an accompaniment over it, with form.

It sits beside :mod:`moodsong.models` in the layering (it reads corpora and representation, and nothing above),
but in its own package: it samples in numpy, and ``moodsong.models`` imports torch on import.

- :mod:`moodsong.song.plan`    key-relative chord n-grams, tilted by valence (the plan)
- :mod:`moodsong.song.melody`  melody events, the condition per token, the numpy sampler of the melody network
- :mod:`moodsong.song.accomp`  accompaniment from runs of real bar patterns, stored as chord-relative roles
- :mod:`moodsong.song.model`   :class:`SongModel`: form, plan, melody and accompaniment together

Learned from POP909 (:mod:`moodsong.corpora.pop909`); trained by :mod:`moodsong.training.song`.
"""
