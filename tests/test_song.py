"""The song model: plan, melody, accompaniment, form, files, controls and bad input.

Most tests use a tiny song model fitted here on synthetic songs (so they run without
../shared); the last ones go through ``compose`` with the shipped model.
"""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from moodsong.corpora.pop909 import Chord, PopSong, parse_chord_label
from moodsong.errors import MoodsongError
from moodsong.song.accomp import AccompanimentModel
from moodsong.song.melody import MelodyConfig, MelodySampler, Vocab, song_events, standard_vocab
from moodsong.song.model import SongModel, SongSpec, fit_styles, parse_form, parse_key
from moodsong.song.plan import ChordPlanModel

torch = pytest.importorskip("torch")

# I vi IV V in C major and i VI iv v... in A minor, one chord per bar.
_MAJOR = [(0, ""), (9, "m"), (5, ""), (7, "")]
_MINOR = [(9, "m"), (5, ""), (2, "m"), (4, "m")]


def _song(i: int, minor: bool, bars: int = 16) -> PopSong:
    rng = np.random.default_rng(i)
    prog = _MINOR if minor else _MAJOR
    chords, mel, piano = [], [], []
    for bar in range(bars):
        root, q = prog[bar % 4]
        t = bar * 16
        chords.append(Chord(t, t + 16, root, q))
        from moodsong.corpora.pop909 import QUALITIES

        tones = [root + iv for iv in QUALITIES[q]]
        piano.append((t, 16, 36 + root, 70))  # bass on the root
        for k, step in enumerate((0, 4, 8, 12)):  # broken chord above
            piano.append((t + step, 4, 60 + tones[k % 3] % 12, 60))
        for step in (0, 4, 8, 12):  # melody: chord tones in quarter notes
            mel.append((t + step, 4, 72 + int(rng.choice(tones)) % 12, 90))
    arr = lambda x: np.array(x, np.int64)  # noqa: E731
    return PopSong(f"{i:03d}", arr(mel), arr(mel)[:0], arr(piano), chords, tonic=9 if minor else 0,
                   mode="minor" if minor else "major", qpm=100.0, num_bars=bars)


@pytest.fixture(scope="module")
def songs():
    return [_song(i, minor=i % 2 == 1) for i in range(12)]


@pytest.fixture(scope="module")
def model(songs):
    from moodsong.training.song import MelodyNet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest and deterministic
    cfg = MelodyConfig(embed=16, hidden=32, layers=1, dropout=0.0)
    torch.manual_seed(0)
    net = MelodyNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    data = [song_events(s) for s in songs]
    n = max(len(t) for t, _ in data)
    T = torch.zeros(len(data), n, dtype=torch.long)
    C = torch.zeros(len(data), n, data[0][1].shape[1])
    M = torch.zeros(len(data), n, dtype=torch.bool)
    for i, (t, c) in enumerate(data):
        T[i, : len(t)], C[i, : len(t)], M[i, : len(t)] = torch.from_numpy(t), torch.from_numpy(c), True
    losses = []
    for _ in range(60):
        loss = net.loss(T, C, M)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.set_num_threads(threads)
    weights = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    m = SongModel(ChordPlanModel(min_context=2, min_chord=1).fit(songs), AccompanimentModel().fit(songs), cfg, weights)
    m.losses = losses
    m.net = net
    return m


def test_chord_labels_fold_onto_known_qualities():
    assert parse_chord_label("F#:min7/b7") == (6, "m7")
    assert parse_chord_label("Bb:maj6") == (10, "")
    assert parse_chord_label("C:sus4(b7)") == (0, "sus4")
    assert parse_chord_label("N") is None


def test_melody_learns(model):
    # a melody of chord tones in quarter notes is easy: the loss must fall far below uniform (ln V)
    assert model.losses[-1] < 0.5 * model.losses[0]
    assert model.losses[0] > 0.8 * np.log(len(standard_vocab()))


def test_melody_events_round_trip_through_miditok():
    """Events -> notes gives back the melody exactly (onset, duration up to 12 beats, key-relative pitch)."""
    from moodsong.song.model import _decode

    rng = np.random.default_rng(3)
    onsets = np.cumsum(rng.integers(1, 20, 40))
    durs = rng.integers(1, 49, 40)
    mel = np.stack([onsets, durs, rng.integers(50, 90, 40), np.full(40, 90)], 1)
    song = PopSong("r", mel, mel[:0], mel[:0], [Chord(0, 16 * 64, 2, "")], tonic=2, mode="major", qpm=100.0,
                   num_bars=int(onsets.max() // 16 + 2))
    toks, conds = song_events(song)
    vocab = Vocab(standard_vocab())
    assert (toks == vocab.bar).sum() == song.num_bars and len(conds) == len(toks)
    back = np.array(_decode(vocab, toks.tolist(), 0, song.tonic))[:, :3]
    np.testing.assert_array_equal(back, mel[:, :3])
    # a crop numbers its bars from the crop's start; a second onset on one step is dropped (one voice)
    toks, _ = song_events(song, start_bar=2, num_bars=3)
    crop = mel[(mel[:, 0] >= 32) & (mel[:, 0] < 80)]
    np.testing.assert_array_equal(np.array(_decode(vocab, toks.tolist(), 2, song.tonic))[:, :3], crop[:, :3])
    two = np.concatenate([mel[:1], mel[:1] + np.array([0, 0, 4, 0]), mel[1:]])
    chord = PopSong("r", two, two[:0], two[:0], song.chords, 2, "major", 100.0, song.num_bars)
    np.testing.assert_array_equal(song_events(chord)[0], song_events(song)[0])


def test_numpy_sampler_matches_torch(model, songs):
    toks, conds = song_events(songs[0])
    with torch.no_grad():
        ref = model.net(torch.from_numpy(toks[None]), torch.from_numpy(conds[None]))[0].numpy()
    s = MelodySampler(model.melody_weights, model.melody_config)
    h = s.initial_state(1)
    out = []
    for t, c in zip(toks, conds):
        logits, h = s.step(np.array([t]), c[None], h)
        out.append(logits[0])
    np.testing.assert_allclose(np.array(out), ref, atol=1e-4)


def test_plan_follows_valence(model):
    rng = np.random.default_rng(0)
    bright = [model.plan.plan_valence(model.plan.sample_phrase(4, "major", 0.9, 0, rng)) for _ in range(20)]
    dark = [model.plan.plan_valence(model.plan.sample_phrase(4, "minor", -0.9, 0, rng)) for _ in range(20)]
    assert np.mean(bright) > np.mean(dark) + 0.5
    closed = model.plan.sample_phrase(4, "major", 0.5, 0, rng, ending="closed")
    assert (closed[-1].degree, closed[-1].quality) == (0, "")
    assert closed[0].start == 0 and closed[-1].end == 4 * 16
    assert all(a.end == b.start for a, b in zip(closed, closed[1:]))


def _bar_agreement(song) -> float:
    from moodsong.evaluation.songs import plan_agreement

    acc = song.to_score()
    acc.tracks = [t for t in acc.tracks if t.name == "Accompaniment"]
    return plan_agreement(acc, [(c.start, n) for c, n in zip(song.plan, song.chord_names())])


def test_song_follows_plan_form_and_is_singable(model):
    songs = model.generate(SongSpec(0.6, 0.5, bars=16), count=3, seed=4)
    for song in songs:
        assert song.form == "A A' B A'"
        assert song.bars == 16
        # the accompaniment plays the plan: every note is a tone of the chord sounding at its onset
        # (chord recognition hearing it back is measured on the shipped model, in test_compose_song)
        chords = [c.absolute(song.tonic) for c in song.plan]
        for t, _, p, _ in song.accompaniment:
            ch = next(c for c in chords if c.start <= t < c.end)
            assert p % 12 in ch.pitch_classes
        mel = song.melody
        assert len(mel) >= 8
        # one voice: no note starts before the previous one ends
        order = np.argsort(mel[:, 0])
        assert np.all(mel[order][1:, 0] >= (mel[order][:-1, 0] + mel[order][:-1, 1]))
        assert np.ptp(mel[:, 2]) <= 21 and mel[:, 2].min() >= 57
        # the closing A' opens like the first A' (a section that returns is recognisably the same)
        first = mel[(mel[:, 0] >= 4 * 16) & (mel[:, 0] < 5 * 16)].copy()
        last = mel[(mel[:, 0] >= 12 * 16) & (mel[:, 0] < 13 * 16)].copy()
        first[:, 0] += 8 * 16
        np.testing.assert_array_equal(first[:, :3], last[:, :3])
        assert song.bar_chords()[4:8] == song.bar_chords()[12:16]
        # the piece ends on a long tonic-triad note
        final = mel[np.argmax(mel[:, 0])]
        assert final[1] >= 8 and (final[2] - song.tonic) % 12 in (0, 4, 7)


def test_accompaniment_register_runs_and_final_bar(model):
    acc = model.accomp
    rng = np.random.default_rng(0)
    lengths = acc.runs_[:, 1]
    # a song that asks for long runs gets one whenever the corpus has one
    want = int(np.median(lengths)) + 1
    if (lengths >= want).any():
        assert all(lengths[acc.choose_run(a, rng, min_length=want)] >= want for a in np.linspace(-1, 1, 9))
    # the bass floor is the lowest note the pianist played in the run (the fixture's bass, 36 + root,
    # is every bar's lowest note)
    for run, (first, n, _) in enumerate(acc.runs_):
        pats = acc.patterns_[first: first + n].reshape(-1, 5)
        bass = pats[(pats[:, 1] > 0) & (pats[:, 2] == 0) & (pats[:, 3] < 48), 3]
        assert acc.run_floor(run) == bass.min()
    for song in model.generate(SongSpec(0.4, -0.3, bars=16), count=3, seed=2):
        a = song.accompaniment
        assert a[:, 2].min() >= 31
        # the final bar: the figure for two beats, then held to the end, only the final chord's tones
        last = a[a[:, 0] >= 15 * 16]
        final = [c.absolute(song.tonic) for c in song.plan][-1]
        assert len(last) and np.all(last[:, 0] < 15 * 16 + 8)
        np.testing.assert_array_equal(last[:, 0] + last[:, 1], 16 * 16)
        assert set(last[:, 2] % 12) <= set(final.pitch_classes)


def test_closed_variant_ends_on_the_tonic(model):
    """A' takes A's chords with a tonic cadence, also when A's second-last chord already is the tonic."""
    from moodsong.song.plan import PlanChord

    ref = [PlanChord(0, 16, 7, ""), PlanChord(16, 48, 0, "m"), PlanChord(48, 64, 5, "m")]
    out = model._recadence(ref, closed=True, mode="minor")
    assert [(c.start, c.end, c.degree, c.quality) for c in out] == [(0, 16, 7, ""), (16, 64, 0, "m")]
    out = model._recadence(ref, closed=False, mode="minor")
    assert (out[-1].degree, out[-1].quality, out[-1].end) == (7, "", 64)
    for song in model.generate(SongSpec(-0.5, 0.2, bars=16), count=4, seed=9):
        last = song.plan[-1]
        assert (last.degree, last.quality, last.end) == (0, "m", 16 * 16)


def test_seed_reproduces(model):
    a = model.generate(SongSpec(-0.5, -0.5, bars=8), count=2, seed=11)
    b = model.generate(SongSpec(-0.5, -0.5, bars=8), count=2, seed=11)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.melody, y.melody)
        np.testing.assert_array_equal(x.accompaniment, y.accompaniment)
        assert x.chord_names() == y.chord_names()
    assert a[0].mode == "minor"


def test_overrides(model):
    song = model.generate(SongSpec(0.8, 0.8, bars=8, key="D minor", tempo_qpm=63, programs=(40, 4)), seed=1)[0]
    assert (song.tonic, song.mode, song.qpm, song.programs) == (2, "minor", 63.0, (40, 4))
    score = song.to_score()
    assert [t.name for t in score.tracks] == ["Melody", "Accompaniment"]
    assert [t.program for t in score.tracks] == [40, 4]
    assert score.key_signatures[0].key == -1 and score.key_signatures[0].tonality == 1
    assert [m.text for m in score.markers] == song.chord_names()
    assert score.tempos[0].qpm == pytest.approx(63)


def test_long_form_returns(model):
    song = model.generate(SongSpec(0.3, 0.3, bars=64), seed=2)[0]
    assert song.form == "A A' B A' C C' B A'"
    assert song.bars == 64
    names = song.bar_chords()
    # each B and each A' are the same chords wherever they return
    assert names[16:24] == names[48:56] and names[8:16] == names[24:32] == names[56:64]


def test_styles_are_learned_from_songs():
    """fit_styles: the intro (whole bars before the melody; a pickup counts its bar) and the register."""
    a = _song(0, minor=False)
    late = PopSong("x", a.melody + np.array([3 * 16 + 8, 0, 0, 0]), a.bridge, a.piano, a.chords, tonic=0,
                   mode="major", qpm=100.0, num_bars=20)
    table = fit_styles([a, late])
    head = a.melody[a.melody[:, 0] < 32 * 16]
    assert table.tolist() == [[0, int(head[:, 2].min()), int(np.ptp(head[:, 2]))],
                              [4, int(head[:, 2].min()), int(np.ptp(head[:, 2]))]]


def test_long_songs_open_with_a_learned_intro_and_a_drawn_register(model, tmp_path):
    styled = SongModel(model.plan, model.accomp, model.melody_config, model.melody_weights,
                       styles=np.array([[8, 60, 14], [4, 64, 12], [9, 64, 12]], np.int16))
    intros = set()
    for seed in range(6):
        song = styled.generate(SongSpec(0.5, 0.5, bars=32), count=2, seed=seed)[0]
        letter, start, bars = song.sections[0]
        assert letter == "I" and start == 0 and bars in (4, 8) and song.bars == 32
        intros.add(bars)
        mel, acc = song.melody, song.accompaniment
        assert mel[:, 0].min() >= bars * 16  # the accompaniment plays alone...
        assert (acc[:, 0] < bars * 16).any()  # ...from the first bar
        # the register comes from one style row's (lowest note 60 with range 14, or 64 with 12), widened to
        # a window of 58..77 or 62..79
        lo, hi = mel[:, 2].min(), mel[:, 2].max()
        assert (lo >= 58 and hi <= 77) or (lo >= 62 and hi <= 79)
    assert intros == {4, 8}
    # short songs and songs whose form the user wrote have no intro unless the form says so
    assert styled.generate(SongSpec(0.5, 0.5, bars=16), seed=0)[0].form == "A A' B A'"
    song = styled.generate(SongSpec(0.5, 0.5, bars=16, form="I A A' B"), seed=0)[0]
    assert song.form == "I A A' B" and song.melody[:, 0].min() >= 4 * 16
    # the style table travels with the model
    styled.save(tmp_path / "styled")
    back = SongModel.load(tmp_path / "styled")
    np.testing.assert_array_equal(back.styles, styled.styles)
    np.testing.assert_array_equal(back.generate(SongSpec(0.1, 0.1, bars=32), seed=3)[0].melody,
                                  styled.generate(SongSpec(0.1, 0.1, bars=32), seed=3)[0].melody)


def test_forms_and_keys_parse():
    assert parse_form("AABA", 16) == (["A", "A", "B", "A"], 4)
    assert parse_form("A A' B A", 32) == (["A", "A'", "B", "A"], 8)
    assert parse_key("F#m") == (6, "minor") and parse_key("Bb major") == (10, "major")
    with pytest.raises(MoodsongError, match="equal"):
        parse_form("ABC", 16)
    with pytest.raises(MoodsongError, match="form"):
        parse_form("A1B", 16)
    with pytest.raises(MoodsongError, match="unknown key"):
        parse_key("H major")


def test_save_load_roundtrip(model, tmp_path):
    model.save(tmp_path / "song")
    back = SongModel.load(tmp_path / "song.json")
    a = model.generate(SongSpec(0.2, -0.4, bars=8), seed=5)[0]
    b = back.generate(SongSpec(0.2, -0.4, bars=8), seed=5)[0]
    np.testing.assert_array_equal(a.melody, b.melody)
    np.testing.assert_array_equal(a.accompaniment, b.accompaniment)
    import json

    old = json.loads((tmp_path / "song.json").read_text())
    old["melody"] = {k: v for k, v in old["melody"].items() if k != "vocab"} | {"vocab_size": 87}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "old.safetensors").write_bytes((tmp_path / "song.safetensors").read_bytes())
    with pytest.raises(MoodsongError, match="retrain"):
        SongModel.load(tmp_path / "old")
    (tmp_path / "bad.json").write_text('{"model_type": "rbm"}')
    with pytest.raises(MoodsongError, match="not a song model"):
        SongModel.load(tmp_path / "bad")
    (tmp_path / "song.safetensors").write_bytes(b"broken")
    with pytest.raises(MoodsongError, match="not a readable song model"):
        SongModel.load(tmp_path / "song")


def test_leadsheet_reopens_with_same_chords(model, tmp_path):
    from music21 import converter, harmony

    from moodsong.render.leadsheet import m21_figure, write_leadsheet

    song = model.generate(SongSpec(-0.6, 0.4, bars=8), seed=3)[0]
    path = write_leadsheet(song, tmp_path / "s.musicxml")
    sheet = converter.parse(str(path))
    figures = [c.figure for c in sheet.recurse().getElementsByClass(harmony.ChordSymbol)]
    assert figures == [harmony.ChordSymbol(m21_figure(n)).figure for n in song.chord_names()]
    notes = [n for n in sheet.recurse().notes if not isinstance(n, harmony.ChordSymbol)]
    assert len(notes) >= len(song.melody)  # notes over a bar line are split and tied


def _primer(tmp_path, drums=False, empty=False):
    s = symusic.Score(480)
    t = symusic.Track("Melody", 0, drums)
    if not empty:
        for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62]):
            t.notes.append(symusic.Note(i * 480, 470, p, 77))
    s.tracks.append(t)
    path = tmp_path / "primer.mid"
    s.dump_midi(str(path))
    return path


def test_primer_is_continued_verbatim(model, tmp_path):
    path = _primer(tmp_path)
    primer = symusic.Score(str(path))
    song = model.generate(SongSpec(0.5, 0.0, bars=8), seed=1, primer=primer)[0]
    assert song.primer_bars == 2 and song.bars == 10
    out = song.to_score()
    mel = [n for n in out.tracks[0].notes]
    kept = [(n.time, n.duration, n.pitch, n.velocity) for n in mel if n.time < 2 * 4 * 480]
    assert kept == [(i * 480, 470, p, 77) for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62])]
    assert any(n.time >= 2 * 4 * 480 for n in mel)  # and the new music follows


def test_bad_primers_get_one_clear_error(tmp_path):
    from moodsong.pipeline import _read_primer_file

    (tmp_path / "x.mid").write_text("not midi")
    with pytest.raises(MoodsongError, match="not a MIDI file"):
        _read_primer_file(tmp_path / "x.mid")
    with pytest.raises(MoodsongError, match="no pitched notes"):
        _read_primer_file(_primer(tmp_path, drums=True))
    with pytest.raises(MoodsongError, match="no such"):
        _read_primer_file(tmp_path / "missing.mid")


def test_instruments_parse():
    from moodsong.pipeline import parse_instruments

    assert parse_instruments("flute") == (73, None)
    assert parse_instruments("violin, Acoustic Grand Piano") == (40, 0)
    assert parse_instruments("12,4") == (12, 4)
    with pytest.raises(MoodsongError, match="unknown instrument"):
        parse_instruments("kazooka")
    with pytest.raises(MoodsongError, match="0-127"):
        parse_instruments("200")
