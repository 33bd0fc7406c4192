"""Sharded corpus preparation: resumable, no file parsed twice or dropped, lazily read, same pieces as load_corpus."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from moodsong.corpora.corpus import load_corpus
from moodsong.corpora.shards import ShardedCorpus, WindowTable, prepare_shards
from moodsong.errors import MoodsongError
from moodsong.models.rbm import RBMConfig
from moodsong.representation.pianoroll import PianoRollConfig, notes_to_roll, write_midi
from moodsong.training.rbm import TrainConfig, train_rbm

N_FILES = 23


@pytest.fixture
def midi_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "midi"
    for i in range(N_FILES):
        n = int(rng.integers(5, 30))
        starts = np.sort(rng.integers(0, 120, n))
        roll = notes_to_roll(starts, starts + rng.integers(1, 8, n), rng.integers(40, 90, n))
        write_midi(roll, root / ("sub" if i % 3 else "") / f"piece{i:02d}.mid")
    (root / "broken.mid").write_bytes(b"MThd not really a midi file")
    return root


class _Crash(Exception):
    pass


def test_interrupted_preparation_resumes_without_duplicates_or_gaps(midi_folder, tmp_path):
    out = tmp_path / "shards"

    def crash_after_two(sid, manifest):
        if sid == 1:
            raise _Crash  # as if the machine went down right after shard 1 was written

    with pytest.raises(_Crash):
        prepare_shards(midi_folder, out=out, shard_pieces=4, workers=1, progress=False, on_shard=crash_after_two)
    assert not (out / "index.json").exists()
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-00000[01].*")}
    assert len(first) == 4
    # a crash between a shard's array and its manifest leaves an orphan array: it must be ignored
    (out / "shard-000002.npy").write_bytes(b"partial garbage")

    written = []
    corpus = prepare_shards(midi_folder, out=out, shard_pieces=4, workers=2, files_per_task=2, progress=False,
                            on_shard=lambda sid, m: written.append(sid))
    assert written[0] == 2  # numbering continued after the complete shards
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-00000[01].*")} == first  # not redone

    manifests = [json.loads((out / f"shard-{sid:06d}.json").read_text()) for sid in range(corpus.num_shards)]
    files = [f for m in manifests for f in m["files"]]
    assert len(files) == len(set(files)) == N_FILES + 1  # every file exactly once, the broken one included
    assert [name for name, _ in corpus.skipped] == ["broken.mid"]

    ref = load_corpus(midi_folder, use_cache=False, progress=False)
    assert sorted(corpus.names) == sorted(ref.names) and len(corpus) == N_FILES
    by_name = dict(zip(corpus.names, corpus.rolls))
    for name, roll in zip(ref.names, ref.rolls):
        assert np.array_equal(by_name[name], roll)
    assert isinstance(corpus.rolls[0], np.memmap) or isinstance(corpus.rolls[0].base, np.memmap)

    # finished: a further call just opens it; load_corpus reads the folder as a corpus too
    again = prepare_shards(midi_folder, out=out, progress=False)
    assert again.names == corpus.names
    assert load_corpus(str(out)).names == corpus.names


def test_shard_folder_of_other_settings_is_refused(midi_folder, tmp_path):
    out = tmp_path / "shards"
    prepare_shards(midi_folder, out=out, workers=1, progress=False)
    with pytest.raises(MoodsongError, match="another corpus"):
        prepare_shards(midi_folder, PianoRollConfig(steps_per_quarter=2), out=out, workers=1, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(MoodsongError, match="not empty"):
        prepare_shards(midi_folder, out=tmp_path / "other", workers=1, progress=False)


def test_lazy_windows_match_in_memory_corpus_and_training(midi_folder, tmp_path):
    sharded = prepare_shards(midi_folder, out=tmp_path / "shards", shard_pieces=3, workers=1, progress=False)
    ref = load_corpus(midi_folder, use_cache=False, progress=False)
    order = [ref.names.index(n) for n in sharded.names]
    ref.names, ref.rolls = [ref.names[i] for i in order], [ref.rolls[i] for i in order]
    for skip in (False, True):
        assert np.array_equal(sharded.windows(4, skip_first=skip), ref.windows(4, skip_first=skip))
    pieces = [0, 5, 7, 11, 20]
    lazy, mem = WindowTable(sharded, pieces, 4), WindowTable(ref, pieces, 4)
    assert lazy.lazy and not mem.lazy and len(lazy) == len(mem) and list(lazy.counts) == list(mem.counts)
    idx = np.random.default_rng(1).permutation(len(lazy))
    assert np.array_equal(lazy.gather(idx), mem.gather(idx))
    np.testing.assert_allclose(lazy.mean(chunk=7), mem.mean())

    # training reads the shards batch by batch and ends where in-memory training ends
    tc = TrainConfig(batch_size=8, epochs=2, device="cpu")
    mc = RBMConfig(num_timesteps=4, num_hidden=8)
    a, _ = train_rbm(sharded, tmp_path / "a", mc, tc, progress=False)
    # in memory on the torch backend too: the same random stream
    b, _ = train_rbm(ref, tmp_path / "b", mc, dataclasses.replace(tc, backend="torch"), progress=False)
    for k, t in a.state_dict().items():
        torch.testing.assert_close(t, b.state_dict()[k])


def test_large_sources_are_sharded_by_load_corpus(midi_folder, monkeypatch):
    import moodsong.corpora.shards

    monkeypatch.setattr(moodsong.corpora.shards, "SHARD_THRESHOLD", 10)
    corpus = load_corpus(midi_folder, progress=False, workers=1)
    assert isinstance(corpus, ShardedCorpus) and len(corpus) == N_FILES
