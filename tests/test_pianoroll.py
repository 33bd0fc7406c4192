"""The note-state matrix: MIDI -> matrix -> MIDI round trips and the demo's semantics."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from moodsong.errors import BadMidiError
from moodsong.representation.pianoroll import (
    PianoRollConfig,
    canonicalize,
    held,
    midi_to_roll,
    read_score,
    roll_to_notes,
    roll_to_score,
    score_to_roll,
    struck,
    write_midi,
)

CFG = PianoRollConfig()


def make_score(tracks, tpq=96, tempos=((0, 120.0),), time_sigs=((0, 4, 4),)):
    """tracks: list of (program, is_drum, [(start_tick, dur_ticks, pitch, velocity), ...])."""
    s = symusic.Score(tpq)
    for t, qpm in tempos:
        s.tempos.append(symusic.Tempo(t, qpm))
    for t, n, d in time_sigs:
        s.time_signatures.append(symusic.TimeSignature(t, n, d))
    for program, drum, notes in tracks:
        tr = symusic.Track("t", program, drum)
        for start, dur, pitch, vel in notes:
            tr.notes.append(symusic.Note(start, dur, pitch, vel))
        s.tracks.append(tr)
    return s


def write(score, path):
    score.dump_midi(str(path))
    return path


def test_demo_layout_held_then_struck():
    # C4 for a quarter (4 steps), then re-struck for a sixteenth.
    s = make_score([(0, False, [(0, 96, 60, 90), (96, 24, 60, 90)])])
    roll = score_to_roll(s)
    assert roll.shape == (5, 156) and roll.dtype == np.uint8
    col = 60 - 24
    assert held(roll)[:, col].tolist() == [1, 1, 1, 1, 1]
    assert struck(roll)[:, col].tolist() == [1, 0, 0, 0, 1]
    assert roll.sum() == 5 + 2  # nothing else is set


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.just(2 * 12)), elements=st.integers(0, 1)))
def test_round_trip_on_generated_matrices(tmp_path_factory, raw):
    cfg = PianoRollConfig(lowest_pitch=60, num_pitches=12)
    roll = canonicalize(raw)
    roll[-1, 0] = roll[-1, 12] = 1  # a note in the last step keeps the length well defined
    roll = canonicalize(roll)
    path = tmp_path_factory.mktemp("rt") / "x.mid"
    write_midi(roll, path, cfg, qpm=97)
    back = midi_to_roll(path, cfg)
    np.testing.assert_array_equal(back, roll)
    # and matrix -> MIDI -> matrix is a fixed point from then on
    write_midi(back, path, cfg)
    np.testing.assert_array_equal(midi_to_roll(path, cfg), roll)


def test_round_trip_real_file(tmp_path, shared_data):
    files = sorted((shared_data / "pop_music_midi").glob("*.midi"))[:20]
    for f in files:
        roll = midi_to_roll(f)
        write_midi(roll, tmp_path / "x.mid")
        np.testing.assert_array_equal(midi_to_roll(tmp_path / "x.mid"), roll)


def test_round_trip_bach_chorale_from_music21(tmp_path):
    from music21 import corpus

    chorale = corpus.parse("bach/bwv66.6")
    chorale.write("midi", fp=tmp_path / "bwv66.mid")
    roll = midi_to_roll(tmp_path / "bwv66.mid")
    assert held(roll).sum(1).max() == 4  # four voices at most
    write_midi(roll, tmp_path / "back.mid")
    np.testing.assert_array_equal(midi_to_roll(tmp_path / "back.mid"), roll)


def test_odd_meters_tempo_changes_and_several_tracks():
    # 7/8 then 5/4, tempo changes, two tracks, a drum track: the demo stopped at the first odd meter.
    s = make_score(
        [
            (0, False, [(0, 48, 60, 80), (7 * 48, 96, 62, 80)]),
            (40, False, [(24, 24, 72, 70)]),
            (0, True, [(0, 24, 36, 100), (48, 24, 38, 100)]),
        ],
        tempos=((0, 100.0), (96, 160.0), (300, 60.0)),
        time_sigs=((0, 7, 8), (7 * 48, 5, 4)),
    )
    roll = score_to_roll(s)
    h, k = held(roll), struck(roll)
    assert roll.shape[0] == 14 + 4  # the note at tick 336 (step 14) lasts four steps
    assert k[0, 60 - 24] and h[0:2, 60 - 24].all() and not h[2, 60 - 24]
    assert k[14, 62 - 24] and h[14:18, 62 - 24].all()
    assert k[1, 72 - 24] and h[1, 72 - 24]
    assert not h[:, 36 - 24].any() and not h[:, 38 - 24].any()  # drums left out by default
    with_drums = score_to_roll(s, PianoRollConfig(include_drums=True))
    assert struck(with_drums)[0, 36 - 24] and struck(with_drums)[2, 38 - 24]


def test_overlapping_notes_of_one_pitch_merge_with_two_strikes():
    s = make_score([(0, False, [(0, 96, 64, 80)]), (0, False, [(48, 96, 64, 80)])])
    roll = score_to_roll(s)
    col = 64 - 24
    assert held(roll)[:, col].tolist() == [1] * 6
    assert struck(roll)[:, col].tolist() == [1, 0, 1, 0, 0, 0]
    col_, start, end = roll_to_notes(roll)
    assert list(zip(start.tolist(), end.tolist())) == [(0, 2), (2, 6)]


def test_out_of_range_pitches_dropped_and_range_configurable():
    s = make_score([(0, False, [(0, 24, 10, 80), (0, 24, 120, 80), (0, 24, 60, 80)])])
    assert held(score_to_roll(s)).sum() == 1
    wide = PianoRollConfig(lowest_pitch=0, num_pitches=128)
    assert held(score_to_roll(s, wide)).sum() == 3
    eighths = PianoRollConfig(steps_per_quarter=2)
    s2 = make_score([(0, False, [(0, 96, 60, 80)])])
    assert score_to_roll(s2, eighths).shape[0] == 2


def test_writing_sets_onsets_lengths_tempo_velocity_program(tmp_path):
    roll = np.zeros((8, CFG.width), np.uint8)
    roll[0:4, 60 - 24] = 1
    roll[0, CFG.num_pitches + 60 - 24] = 1
    roll[4:8, 67 - 24] = 1  # held without a strike after silence: still a note start
    path = write_midi(roll, tmp_path / "x.mid", qpm=90, velocity=101, program=40)
    score = symusic.Score(str(path))
    assert abs(score.tempos[0].qpm - 90) < 0.01
    (track,) = score.tracks
    assert track.program == 40
    notes = sorted((n.time, n.duration, n.pitch, n.velocity) for n in track.notes)
    tpq = score.ticks_per_quarter
    assert notes == [(0, tpq, 60, 101), (tpq, tpq, 67, 101)]
    assert abs(score.to("second").end() - 2 * 60 / 90) < 1e-3  # two quarters at 90 qpm


def test_struck_without_held_reads_as_a_one_step_note():
    roll = np.zeros((3, CFG.width), np.uint8)
    roll[1, CFG.num_pitches + 5] = 1
    col, start, end = roll_to_notes(roll)
    assert (col.tolist(), start.tolist(), end.tolist()) == ([5], [1], [2])
    assert canonicalize(roll)[1, 5] == 1


def test_bad_files_raise_clear_errors(tmp_path):
    text = tmp_path / "notes.mid"
    text.write_text("this is not music")
    with pytest.raises(BadMidiError, match="not a MIDI file"):
        midi_to_roll(text)
    with pytest.raises(BadMidiError, match="no such file"):
        midi_to_roll(tmp_path / "missing.mid")
    good = write_midi(np.eye(4, CFG.width, dtype=np.uint8), tmp_path / "g.mid")
    data = good.read_bytes()
    with pytest.raises(BadMidiError):
        read_score(data[:20])


def test_roll_to_score_validates_arguments():
    roll = np.zeros((2, CFG.width), np.uint8)
    with pytest.raises(ValueError):
        roll_to_score(roll, qpm=0)
    with pytest.raises(ValueError):
        roll_to_score(roll, program=128)
    with pytest.raises(ValueError):
        PianoRollConfig(lowest_pitch=100, num_pitches=50)
