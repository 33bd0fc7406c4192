"""Chord names and key estimation on known progressions and real corpus pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic
from click.testing import CliRunner

from moodsong.cli import main
from moodsong.representation.chords import NO_CHORD, analyze, estimate_key, name_chord, segments


def progression(chords, beats_per_chord=4, time_signature=(4, 4), tpq=480, arpeggiate=False):
    """Score with one chord (list of MIDI pitches, or [] for rest) per span of ``beats_per_chord`` quarters."""
    s = symusic.Score(tpq)
    s.tempos.append(symusic.Tempo(0, 100.0))
    s.time_signatures.append(symusic.TimeSignature(0, *time_signature))
    t = symusic.Track("piano", 0, False)
    span = beats_per_chord * tpq
    for i, chord in enumerate(chords):
        for j, p in enumerate(chord):
            if arpeggiate:  # broken chord: each note in turn, bass held
                start = i * span + (0 if j == 0 else (j - 1) * span // max(1, len(chord) - 1))
                dur = span if j == 0 else span // max(1, len(chord) - 1)
            else:
                start, dur = i * span, span
            t.notes.append(symusic.Note(start, dur, p, 80))
    s.tracks.append(t)
    return s


def test_i_vi_iv_v_in_c():
    chords = [[48, 60, 64, 67], [45, 57, 60, 64], [41, 57, 60, 65], [43, 55, 59, 62]]
    assert analyze(progression(chords)).names == ["C", "Am", "F", "G"]
    # With the seventh on V, and played as broken chords.
    chords[3] = [43, 55, 59, 62, 65]
    prog = analyze(progression(chords, arpeggiate=True))
    assert prog.names == ["C", "Am", "F", "G7"]
    assert prog.format() == "C | Am | F | G7"


def test_minor_ii_v_i():
    prog = analyze(progression([[47, 62, 65, 69], [40, 56, 62, 64, 71], [45, 57, 60, 64], [45, 57, 60, 64]]))
    assert prog.key == "A minor"
    assert prog.names == ["Bø7", "E7", "Am", "Am"]  # G# spelled as the raised leading tone


def test_flat_key_spelling_and_rests():
    # I-IV-V7-I in Bb with a bar of rest.
    chords = [[46, 58, 62, 65], [51, 58, 63, 67], [], [41, 57, 60, 63, 65], [46, 58, 62, 65]]
    prog = analyze(progression(chords))
    assert prog.key == "Bb major"
    assert prog.names == ["Bb", "Eb", NO_CHORD, "F7", "Bb"]


def test_per_beat_follows_the_time_signature():
    score = progression([[48, 60, 64, 67], [43, 55, 59, 62]], beats_per_chord=3, time_signature=(3, 4))
    assert [(s, e, b) for s, e, b in segments(score, "bar")] == [(0.0, 3.0, 1), (3.0, 6.0, 2)]
    prog = analyze(score, per="beat")
    assert [s.bar for s in prog.segments] == [1, 1, 1, 2, 2, 2]
    assert prog.names == ["C"] * 3 + ["G"] * 3
    # 6/8: a beat is an eighth note.
    assert len(segments(progression([[60, 64, 67]], beats_per_chord=3, time_signature=(6, 8)), "beat")) == 6


def test_name_chord_from_histogram():
    h = np.zeros(12)
    h[[7, 11, 2, 5]] = [2, 1, 1, 1]
    assert name_chord(h, bass_pc=7, key="C major")[2] == "G7"
    assert name_chord(np.zeros(12)) == (None, "", NO_CHORD)
    # Passing tones do not change the chord: C major triad with a short D.
    h = np.zeros(12)
    h[[0, 4, 7]] = 4
    h[2] = 0.5
    assert name_chord(h, bass_pc=0, key="C major")[2] == "C"


@pytest.mark.slow
@pytest.mark.parametrize(
    "work, key",
    [
        ("bach/bwv846", "C major"),  # Well-Tempered Clavier I, Prelude in C
        ("bach/bwv66.6", "F# minor"),  # chorale "Christ unser Herr zum Jordan kam"
        ("mozart/k545", "C major"),  # Sonata facile, first movement exposition
        ("bach/bwv1.6", "F major"),  # chorale "Wie schön leuchtet der Morgenstern"
    ],
)
def test_key_of_corpus_pieces(work, key, tmp_path):
    corpus = pytest.importorskip("music21.corpus")
    stream = corpus.parse(work)
    midi = stream.write("midi", fp=str(tmp_path / "piece.mid"))
    assert estimate_key(symusic.Score(str(midi))) == key


@pytest.mark.slow
def test_bach_prelude_chords_per_bar(tmp_path):
    from music21 import corpus

    midi = corpus.parse("bach/bwv846").write("midi", fp=str(tmp_path / "bwv846.mid"))
    names = analyze(midi).names
    # The famous opening: C, Dm7/C, G7/B, C, Am/C, D7/C, G/B, Cmaj7/B.
    assert names[:8] == ["C", "Dm7", "G7", "C", "Am", "D7", "G", "Cmaj7"]


def test_cli_chords(tmp_path):
    mid = tmp_path / "song.mid"
    progression([[48, 60, 64, 67], [45, 57, 60, 64], [41, 57, 60, 65], [43, 55, 59, 62, 65]]).dump_midi(str(mid))
    result = CliRunner().invoke(main, ["chords", str(mid)])
    assert result.exit_code == 0, result.output
    assert "C | Am | F | G7" in result.output and "key:" in result.output
    result = CliRunner().invoke(main, ["chords", str(mid), "--json", "--per", "beat"])
    d = json.loads(result.output)
    assert [c["chord"] for c in d["chords"]][::4] == ["C", "Am", "F", "G7"]


# -- the music21-free templates, key finder and spelling equal what music21 gives ------------------------


def test_templates_equal_music21_chord_symbols():
    harmony = pytest.importorskip("music21.harmony")
    from moodsong.representation.chords import _KINDS, _templates

    names = ["C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B"]
    want = []
    for suffix, prior in _KINDS.items():
        for root in range(12):
            figure = names[root] + ("sus" if suffix == "sus4" else suffix)
            mask = np.zeros(12, bool)
            mask[list(harmony.ChordSymbol(figure).pitchClasses)] = True
            want.append((root, suffix, mask.tolist(), prior))
    assert [(r, s, m.tolist(), p) for r, s, m, p in _templates()] == want


def music21_key(weights) -> str:
    """The key music21's Temperley-Kostka-Payne analysis finds for a pitch-class weight histogram."""
    from music21 import note, stream

    s = stream.Stream()
    for pc, w in enumerate(weights):
        if w > 0:
            n = note.Note(pc + 60)
            n.quarterLength = float(w)
            s.append(n)
    k = s.analyze("TemperleyKostkaPayne")
    return f"{k.tonic.name.replace('-', 'b')} {k.mode}"


def test_key_finder_equals_music21():
    pytest.importorskip("music21")
    from moodsong.representation.chords import key_name, key_of_histogram

    rng = np.random.default_rng(0)
    for i in range(60):
        w = np.round(rng.gamma(0.6, 2.0, 12) * (rng.random(12) < 0.7), 2)  # sparse, like real pieces
        if i % 3 == 0:  # a diatonic collection with a few chromatic notes
            w = np.zeros(12)
            w[(np.array([0, 2, 4, 5, 7, 9, 11]) + rng.integers(12)) % 12] = rng.integers(1, 9, 7)
        if w.sum() == 0:
            continue
        assert key_name(*key_of_histogram(w)[:2]) == music21_key(w), w


def test_spelling_equals_music21_scales():
    m21key = pytest.importorskip("music21.key")
    from moodsong.representation.chords import _spelling, key_name

    for mode in ("major", "minor"):
        for pc in range(12):
            name = key_name(pc, mode)
            tonic = name.split()[0]
            k = m21key.Key(tonic.replace("b", "-") if len(tonic) > 1 else tonic, mode)
            want = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"] if k.sharps > 0 else \
                ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
            for p in k.getScale(mode).getPitches():
                want[p.pitchClass] = p.name.replace("-", "b")
            if mode == "minor":
                want[k.getLeadingTone().pitchClass] = k.getLeadingTone().name.replace("-", "b")
            assert _spelling(name) == tuple(want), name


def test_chord_analysis_imports_no_music21():
    from test_lazy_imports import loaded_after

    code = ("import symusic\nfrom moodsong.representation.chords import analyze\n"
            "s = symusic.Score(480)\nt = symusic.Track('p', 0, False)\n"
            "[t.notes.append(symusic.Note(0, 1920, p, 80)) for p in (57, 60, 64)]\ns.tracks.append(t)\n"
            "assert analyze(s).names == ['Am']")
    assert "music21" not in loaded_after(code)
