"""Lines inside polyphony: the top line (skyline) of a set of notes.

The top line, the highest note starting at each onset, is the standard cheap stand-in for the melody of
a piano texture when no track is marked as melody. Three layers use it: song evaluation (melody checks),
continuing a primer (its melody line) and the music-emotion estimator (melody-only versions of clips).
"""

from __future__ import annotations

import numpy as np

__all__ = ["top_line"]


def top_line(onset: np.ndarray, pitch: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Indices of the top line: the highest note of each group of onsets, in onset order.

    Parameters
    ----------
    onset : numpy.ndarray
        Note onsets, any unit (steps, ticks or seconds).
    pitch : numpy.ndarray
        MIDI pitches, same length.
    tolerance : float
        Onsets at most this far after a group's first onset join the group (in ``onset``'s unit): 0 for
        quantised steps, about 0.05 s for a played chord whose notes are not struck together.

    Returns
    -------
    numpy.ndarray
        Indices into the inputs, one per group, sorted by onset.
    """
    onset = np.asarray(onset)
    pitch = np.asarray(pitch)
    if onset.size == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((-pitch, onset))
    if tolerance <= 0:
        on = onset[order]
        return order[np.r_[True, on[1:] != on[:-1]]]
    # Groups start where an onset lies more than ``tolerance`` after the group's first onset; a loop
    # over groups, since the first onset of a group depends on where the previous group ended.
    by_time = np.argsort(onset, kind="stable")
    on = onset[by_time]
    keep, i = [], 0
    while i < on.size:
        j = int(np.searchsorted(on, on[i] + tolerance, side="right"))
        group = by_time[i:j]
        keep.append(group[np.argmax(pitch[group])])
        i = j
    return np.asarray(keep, np.int64)
