"""Corpora: folders, built-in music21 sources, benchmark pickles, the cache and bad inputs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from moodsong.corpora import corpus as corpus_mod
from moodsong.corpora import sources
from moodsong.corpora.corpus import load_corpus, load_polyphonic, sequences_to_pianoroll, sequences_to_rolls
from moodsong.errors import MoodsongError
from moodsong.representation.pianoroll import PianoRollConfig, held, struck, write_midi


def _song(seed: int, steps: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    roll = np.zeros((steps, 156), np.uint8)
    for t in range(0, steps, 4):
        for p in rng.choice(np.arange(30, 50), 3, replace=False):
            roll[t : t + 4, p] = 1
            roll[t, 78 + p] = 1
    return roll


@pytest.fixture
def midi_folder(tmp_path):
    folder = tmp_path / "midi"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        write_midi(_song(i), folder / f"song{i}.mid")
    write_midi(_song(9), folder / "sub" / "deep.midi")
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x00\x60MTrk\xff\xff")
    (folder / "text.mid").write_text("hello")
    (folder / "readme.txt").write_text("not a midi suffix: ignored")
    return folder


def test_folder_is_read_recursively_and_bad_files_are_reported(midi_folder, tmp_path):
    c = load_corpus(midi_folder, cache_dir=tmp_path / "cache")
    assert sorted(c.names) == ["song0.mid", "song1.mid", "song2.mid", "sub/deep.midi"]
    assert sorted(n for n, _ in c.skipped) == ["broken.mid", "text.mid"]
    assert all(reason for _, reason in c.skipped)
    np.testing.assert_array_equal(c.rolls[c.names.index("song1.mid")], _song(1))
    assert "skipped 2" in c.summary()


def test_second_run_comes_from_the_cache(midi_folder, tmp_path, monkeypatch):
    first = load_corpus(midi_folder, cache_dir=tmp_path / "cache")

    def boom(*a, **k):
        raise AssertionError("parsed again despite a cached result")

    monkeypatch.setattr(sources, "parse_midi", boom)
    second = load_corpus(midi_folder, cache_dir=tmp_path / "cache")
    assert second.names == first.names and second.skipped == first.skipped
    for a, b in zip(first.rolls, second.rolls):
        np.testing.assert_array_equal(a, b)
    # other representation settings or changed content are a different cache entry
    with pytest.raises(AssertionError, match="parsed again"):
        load_corpus(midi_folder, PianoRollConfig(steps_per_quarter=2), cache_dir=tmp_path / "cache")
    write_midi(_song(5), midi_folder / "song0.mid")
    with pytest.raises(AssertionError, match="parsed again"):
        load_corpus(midi_folder, cache_dir=tmp_path / "cache")


def test_parallel_preparation_matches_serial(tmp_path):
    folder = tmp_path / "many"
    for i in range(300):  # above the serial threshold, so the process pool runs
        write_midi(_song(i, 8), folder / f"{i:03d}.mid")
    par = load_corpus(folder, workers=2, use_cache=False, progress=False)
    ser = load_corpus(folder, workers=1, use_cache=False, progress=False)
    assert par.names == ser.names and len(par) == 300
    assert all((a == b).all() for a, b in zip(par.rolls, ser.rolls))


def test_missing_empty_and_unreadable_sources_are_clear_errors(tmp_path):
    with pytest.raises(MoodsongError, match="no such file or folder"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoodsongError, match="no MIDI files"):
        load_corpus(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mid").write_text("nope")
    with pytest.raises(MoodsongError, match="none of 1 input"):
        load_corpus(bad, use_cache=False)


def test_builtin_music21_corpus_needs_no_download():
    c = load_corpus("nottingham", progress=False)
    assert len(c) >= 2 and all(r.shape[1] == 156 for r in c.rolls)
    assert all(held(r).any() for r in c.rolls)


def test_windows_cover_songs_and_demo_skip_is_only_opt_in():
    cfg = PianoRollConfig()
    c = corpus_mod.Corpus(["a", "b"], [_song(0, 45), _song(1, 31)], cfg)
    w = c.windows(15)
    assert w.shape == (3 + 2, 15 * 156)
    np.testing.assert_array_equal(w[0].reshape(15, 156), _song(0, 45)[:15])
    assert c.windows(15, skip_first=True).shape[0] == 3  # the demo's bug, kept only for the faithful benchmark


def _benchmark_pickle(path):
    data = {
        "train": [[(np.int64(60), np.int64(64)), (np.int64(60),), (), (62,)]],
        "valid": [[(48, 52, 55)] * 3],
        "test": [[(108,), (21, 108)]],
    }
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def test_polyphonic_benchmark_pickle(tmp_path):
    path = _benchmark_pickle(tmp_path / "tiny.pkl")
    data = load_polyphonic(path)
    assert [len(data[s]) for s in ("train", "valid", "test")] == [1, 1, 1]
    assert data["train"][0] == [(60, 64), (60,), (), (62,)]
    (r,) = sequences_to_pianoroll(data["test"])
    assert r.shape == (2, 88) and r[1, 0] == 1 and r[1, 87] == 1 and r.sum() == 3
    (nm,) = sequences_to_rolls(data["train"], PianoRollConfig(), steps_per_frame=1)
    col = 60 - 24
    assert held(nm)[:, col].tolist() == [1, 1, 0, 0] and struck(nm)[:, col].tolist() == [1, 0, 0, 0]
    c = load_corpus(f"{path}:valid")
    assert len(c) == 1 and c.rolls[0].shape[0] == 3 * 4  # quarter-note frames -> 4 sixteenth steps each


def test_benchmark_loader_refuses_code_and_bad_layouts(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"train": [Evil()]}))
    with pytest.raises(MoodsongError, match="cannot read"):
        load_polyphonic(tmp_path / "evil.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(MoodsongError, match="train"):
        load_polyphonic(tmp_path / "list.pkl")


def test_real_jsb_chorales_split_sizes(shared_data):
    data = load_polyphonic(shared_data / "polyphonic" / "jsb_chorales.pkl")
    assert [len(data[s]) for s in ("train", "valid", "test")] == [229, 76, 77]
    assert sum(len(s) for s in data["test"]) == 4725
