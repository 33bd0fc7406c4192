"""moodsong.evaluation.songs on hand-built pieces: features, overlapping area, the classifier test, MIDI round trip."""

import numpy as np
import pytest
import symusic

from moodsong.evaluation import songs as M


def line(pitches, dur=4, start=0, velocity=80):
    """A monophonic line: one note per ``dur`` steps."""
    return np.array([[start + i * dur, dur, p, velocity] for i, p in enumerate(pitches)], np.int64)


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def test_scale_consistency_major_scale_vs_chromatic():
    assert M.piece_features(line(C_MAJOR))["scale_consistency"] == 1.0
    chromatic = M.piece_features(line(range(60, 72)))["scale_consistency"]
    assert chromatic == pytest.approx(7 / 12)


def test_entropy_range_density_ioi_polyphony():
    f = M.piece_features(line(range(60, 72)))  # 12 quarter notes = 3 bars
    assert f["pitch_class_entropy"] == pytest.approx(np.log2(12))
    assert f["pitch_range"] == 11
    assert f["note_density"] == pytest.approx(4.0)
    assert f["mean_ioi"] == pytest.approx(1.0)
    assert f["polyphony"] == pytest.approx(1.0)
    assert f["onbeat_fraction"] == 1.0
    assert M.piece_features(line([60] * 8))["pitch_class_entropy"] == 0.0
    triads = np.array([[0, 16, 60, 80], [0, 16, 64, 80], [0, 16, 67, 80], [16, 16, 62, 80]])
    assert M.piece_features(triads)["polyphony"] == pytest.approx((16 * 3 + 16) / 32)


def test_bar_and_rhythm_repetition():
    bar = [60, 64, 67, 72]
    same = line(bar * 4)  # four identical bars
    f = M.piece_features(same)
    assert f["bar_repetition"] == 1.0 and f["rhythm_repetition"] == 1.0
    # same rhythm, different pitches in every bar: rhythm repeats, pitches do not
    diff = line([60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79, 81, 83, 84, 86])
    g = M.piece_features(diff)
    assert g["rhythm_repetition"] == 1.0
    assert g["bar_repetition"] == 0.0
    # half of each bar shared with the next one
    h = M.piece_features(line([60, 62, 64, 65, 60, 62, 67, 69]))
    assert h["bar_repetition"] == pytest.approx(2 / 6)


def test_melody_range_prefers_the_melody_track():
    tracks = {"Melody": line([72, 74, 76]), "Accompaniment": line([36, 43], dur=8)}
    assert M.piece_features(tracks)["melody_range"] == 4
    assert M.piece_features(tracks)["pitch_range"] == 40


def test_crop_keeps_starts_and_clips_durations():
    a = np.array([[0, 4, 60, 80], [500, 30, 62, 80], [512, 4, 64, 80]])
    c = M.crop({"x": a}, bars=32)["x"]
    assert c.tolist() == [[0, 4, 60, 80], [500, 12, 62, 80]]
    assert M.crop([a], bars=1)[0].tolist() == [[0, 4, 60, 80]]


def test_monophony():
    assert M.melody_monophony(line(C_MAJOR)) == 1.0
    chord = np.array([[0, 8, 60, 80], [0, 8, 64, 80], [0, 8, 67, 80]])
    assert M.melody_monophony(chord) == 0.0
    legato = np.array([[0, 8, 60, 80], [4, 8, 62, 80]])  # overlap on steps 4..7 of 0..11
    assert M.melody_monophony(legato) == pytest.approx(8 / 12)


def test_phrase_endings_on_stable_tones():
    # two phrases in C major: the first ends on E (tonic triad), the second on B (not), rest of 2 beats between
    mel = np.vstack([line([60, 62, 64], start=0), line([65, 67, 71], start=20)])
    out = M.phrase_endings(mel, tonic=0, mode="major")
    assert out["phrases"] == 2 and out["tonic_triad"] == 0.5
    # B is a chord tone of G, the plan's chord there
    out = M.phrase_endings(mel, tonic=0, mode="major", plan=[(0, "C"), (16, "G7")])
    assert out["chord_tone"] == 1.0 and out["stable"] == 1.0
    assert M.phrase_endings(mel, tonic=0, mode="major", final_is_end=False)["phrases"] == 1
    assert M.melody_range(mel) == 11
    # a held note: no rest, but its next onset is 2 beats away
    held = line([60, 62, 64, 67, 65, 64], dur=4) + 0
    held[2, 1] = 8
    held[3:, 0] += 4
    assert M.phrase_endings(held, tonic=0, mode="major", final_is_end=False)["phrases"] == 0
    out = M.phrase_endings(held, tonic=0, mode="major", final_is_end=False, by="ioi")
    assert out["phrases"] == 1 and out["tonic_triad"] == 1.0


def test_overlap_identical_and_disjoint():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 200)
    assert M.overlap(a, a) == pytest.approx(1.0, abs=1e-3)
    assert M.overlap(a, a + 20) < 0.01
    b = rng.normal(0, 1, 200)
    assert M.overlap(a, b) > 0.85
    assert 0.3 < M.overlap(a, b + 1.5) < 0.7  # two unit normals 1.5 apart overlap by ~0.45
    # constant samples: no KDE, still defined
    assert M.overlap(np.ones(10), np.ones(12)) == pytest.approx(1.0, abs=1e-3)
    assert M.overlap(np.ones(10), np.zeros(10)) < 0.01
    assert M.overlap(np.ones(10), a) < 0.2
    assert np.isnan(M.overlap([], a))


def test_two_sample_accuracy_chance_and_separable():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    acc, p = M.two_sample_accuracy(x, y, repeats=2, permutations=19, seed=0)
    assert abs(acc - 0.5) < 0.15 and p > 0.05
    acc, p = M.two_sample_accuracy(x, y + np.array([3.0, 0, 0, 0]), repeats=2, permutations=19, seed=0)
    assert acc > 0.9 and p == pytest.approx(1 / 20)
    # unequal sizes: balanced accuracy keeps chance at 0.5
    acc, _ = M.two_sample_accuracy(rng.normal(size=(60, 4)), rng.normal(size=(20, 4)), repeats=3, permutations=0)
    assert abs(acc - 0.5) < 0.15


def test_chord_symbols_and_families():
    assert M.parse_chord_symbol("Bbmaj7") == (10, "maj7")
    assert M.parse_chord_symbol("F#m") == (6, "m")
    assert M.parse_chord_symbol("Eø7") == (4, "ø7")
    assert M.parse_chord_symbol("B-") == (10, "")
    assert M.parse_chord_symbol("C/E") == (0, "")
    assert M.parse_chord_symbol("N.C.") is None and M.parse_chord_symbol("Chorus") is None
    assert [M.chord_family(s) for s in ["", "7", "maj7", "m", "m7", "o", "ø7", "o7", "+", "sus4"]] == [
        "major", "major", "major", "minor", "minor", "dim", "dim", "dim", "aug", "sus"]
    assert M.chords_agree("Am7", "Am") and M.chords_agree("C", "Cmaj7") and M.chords_agree("Csus4", "C")
    assert not M.chords_agree("Am", "A") and not M.chords_agree("C", "Am") and not M.chords_agree("C", "N.C.")


def block_chords(plan_pcs, bars_per_chord=1, octave=48):
    """Whole-bar block chords: one triad per bar from a list of pitch-class tuples."""
    rows = []
    for b, pcs in enumerate(plan_pcs):
        for pc in pcs:
            rows.append([b * 16 * bars_per_chord, 16 * bars_per_chord, octave + pc, 70])
    return np.array(rows, np.int64)


def test_plan_agreement():
    plan = [(0, "C"), (16, "Am"), (32, "F"), (48, "G7")]
    played = block_chords([(0, 4, 7), (9, 0, 4), (5, 9, 0), (7, 11, 2, 5)])
    assert M.plan_agreement(played, plan) == 1.0
    wrong = block_chords([(0, 4, 7), (9, 1, 4), (5, 9, 0), (2, 5, 9)])  # A major, D minor instead
    rows = M.compare_plan(wrong, plan)
    assert [r.agree for r in rows] == [True, False, True, False]
    assert M.plan_agreement(wrong, plan) == 0.5
    # a plan chord that changes mid-bar: the longer one counts; "N.C." bars are left out
    assert [r.planned for r in M.compare_plan(played, [(0, "C"), (28, "Am"), (48, "N.C.")])] == ["C", "C", "Am"]


def test_read_song_midi_round_trip(tmp_path):
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.key_signatures.append(symusic.KeySignature(0, -1, 1))  # D minor
    mel = symusic.Track("Melody", program=0)
    for i, p in enumerate([62, 65, 69, 67]):
        mel.notes.append(symusic.Note(i * 480, 480, p, 90))
    acc = symusic.Track("Accompaniment", program=0)
    for p in (50, 53, 57):
        acc.notes.append(symusic.Note(0, 1920, p, 60))
    for p in (46, 50, 53):
        acc.notes.append(symusic.Note(1920, 1920, p, 60))
    bass = symusic.Track("Bass", program=33)
    bass.notes.append(symusic.Note(0, 960, 38, 70))
    score.tracks.extend([mel, acc, bass])
    for t, text in [(0, "Dm"), (1920, "Bb"), (2400, "Verse")]:
        score.markers.append(symusic.TextMeta(t, text))
    path = tmp_path / "song.mid"
    score.dump_midi(str(path))

    tracks, plan = M.read_song_midi(path)
    assert set(tracks) == {"Melody", "Accompaniment", "Bass"}
    assert tracks["Melody"].tolist() == [[0, 4, 62, 90], [4, 4, 65, 90], [8, 4, 69, 90], [12, 4, 67, 90]]
    assert tracks["Accompaniment"][:, :3].tolist() == [[0, 16, 50], [0, 16, 53], [0, 16, 57],
                                                       [16, 16, 46], [16, 16, 50], [16, 16, 53]]
    assert tracks["Bass"].tolist() == [[0, 8, 38, 70]]
    assert plan == [(0, "Dm"), (16, "Bb")]  # "Verse" is not a chord symbol
    assert M.midi_key(path) == (2, "minor")
    accomp = {k: v for k, v in tracks.items() if k != "Melody"}
    assert M.plan_agreement(accomp, plan) == 1.0
    assert M.plan_agreement(symusic.Score(str(path)), plan) == 1.0  # a Score reads the same
    assert M.melody_monophony(tracks["Melody"]) == 1.0


def test_feature_matrix_and_overlaps():
    feats = [M.piece_features(line(C_MAJOR, start=s)) for s in range(0, 40, 4)]
    X = M.feature_matrix(feats)
    assert X.shape == (10, len(M.FEATURES))
    oa = M.overlaps(X, X)
    assert oa["mean"] == pytest.approx(1.0, abs=1e-3)
    empty = M.piece_features(np.zeros((0, 4)))
    assert all(np.isnan(v) for v in empty.values())
