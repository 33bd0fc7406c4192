"""Songs: a harmonic plan chosen for an emotion, a melody and an accompaniment over it, with form.

Learned from POP909 (:mod:`moodsong.song.pop909`).
"""
