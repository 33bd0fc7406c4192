"""The top line of polyphonic notes (moodsong.representation.lines)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from moodsong.representation.lines import top_line

notes = st.lists(st.tuples(st.integers(0, 40), st.integers(21, 108)), min_size=0, max_size=60)


@settings(max_examples=200, deadline=None)
@given(notes)
def test_one_highest_note_per_onset(pairs):
    onset = np.array([p[0] for p in pairs], np.int64)
    pitch = np.array([p[1] for p in pairs], np.int64)
    k = top_line(onset, pitch)
    assert k.size == np.unique(onset).size
    assert np.all(np.diff(onset[k]) > 0)  # in onset order, one per onset
    for i in k:
        assert pitch[i] == pitch[onset == onset[i]].max()


@settings(max_examples=200, deadline=None)
@given(notes, st.floats(0.5, 3.0))
def test_tolerance_groups_near_onsets(pairs, tol):
    onset = np.array([p[0] for p in pairs], np.float64) * 0.7
    pitch = np.array([p[1] for p in pairs], np.int64)
    k = top_line(onset, pitch, tolerance=tol)
    assert k.size <= np.unique(onset).size
    starts = np.sort(onset[k])
    assert np.all(np.diff(starts) > 0)
    # every note belongs to the group of the last kept onset-group start at or before it, within tol
    # (checked through the groups' first onsets: consecutive groups start more than tol apart)
    firsts = []
    for t in np.sort(onset):
        if not firsts or t - firsts[-1] > tol:
            firsts.append(t)
    assert k.size == len(firsts)


def test_played_chord_and_melody():
    # a chord whose notes are struck 20 ms apart, then a melody note: the chord's top and the melody note
    onset = np.array([0.0, 0.01, 0.02, 0.5])
    pitch = np.array([60, 72, 64, 67])
    assert top_line(onset, pitch, tolerance=0.05).tolist() == [1, 3]
    assert top_line(onset, pitch).tolist() == [0, 1, 2, 3]
    assert top_line(np.zeros(0), np.zeros(0)).size == 0
