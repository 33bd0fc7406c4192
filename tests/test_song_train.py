"""``moodsong train-song``: any MIDI folder (chords recognised), resume, and two-process DDP."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import symusic
from click.testing import CliRunner

from moodsong.cli import main

torch = pytest.importorskip("torch")


def _write_midi_folder(folder: Path, count: int = 10) -> Path:
    """Songs of ``tests/test_song.py`` written as plain MIDI (tracks Melody and Piano, no annotations)."""
    from test_song import _song

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        song = _song(i, minor=i % 2 == 1)
        score = symusic.Score(480)
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        for name, notes in (("Melody", song.melody), ("Piano", song.piano)):
            t = symusic.Track(name, 0, False)
            for s, d, p, v in notes.tolist():
                t.notes.append(symusic.Note(s * 120, d * 120, p, v))
            score.tracks.append(t)
        score.dump_midi(str(folder / f"song{i:02d}.mid"))
    return folder


@pytest.mark.slow
def test_train_song_on_plain_midi_resumes_and_composes(tmp_path):
    from moodsong.corpora.songs import song_from_midi

    src = _write_midi_folder(tmp_path / "midi")
    song = song_from_midi(src / "song00.mid")  # chords and key recognised from the notes
    assert len(song.melody) == 64 and len(song.piano) == 80
    assert [(c.root, c.quality) for c in song.chords[:4]] == [(0, ""), (9, "m"), (5, ""), (7, "")]
    out = tmp_path / "run"
    args = ["train-song", str(src), "--out", str(out), "--hidden", "32", "--threads", "1"]
    r = CliRunner().invoke(main, [*args, "--epochs", "2"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["model_type"] == "song" and meta["training"]["epochs_done"] >= 1
    r = CliRunner().invoke(main, [*args, "--epochs", "2"])
    assert r.exit_code == 2 and "--resume" in r.output  # never overwrites silently
    r = CliRunner().invoke(main, [*args, "--epochs", "4", "--resume"])
    assert r.exit_code == 0 and "resumed after epoch 2" in r.output, r.output
    hist = json.loads((out / "model.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in hist][-1] >= 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    r = CliRunner().invoke(main, ["compose", "--quadrant", "1", "--bars", "8", "--candidates", "2", "--seed", "1",
                                  "--model", str(out / "model.json"), "--out", str(tmp_path / "song"),
                                  "--audio", "none", "--no-picture"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "song" / "moodsong.mid").is_file() and (tmp_path / "song" / "moodsong.musicxml").is_file()


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_song import _song

    from moodsong.song.melody import MelodyConfig
    from moodsong.training import distributed
    from moodsong.training.song import SongTrainConfig, train_song_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init_from_env("cpu").world_size == world
    try:
        songs = [_song(i, minor=i % 2 == 1) for i in range(8)]
        cfg = SongTrainConfig(epochs=3, batch_size=4, melody=MelodyConfig(embed=16, hidden=32, layers=1, dropout=0.0))
        _, net = train_song_model(songs[:6], songs[6:], out, cfg, device="cpu", log=None, progress=False)
        # every rank ends with the same weights: each saves its own for the parent to compare
        np.save(Path(out) / f"w{rank}.npy", net.out.weight.detach().numpy())
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_train_song_runs_data_parallel(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    meta = json.loads((tmp_path / "model.json").read_text())
    hist = meta["training"]["history"]
    assert meta["training"]["world_size"] == 2 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    np.testing.assert_array_equal(np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy"))
