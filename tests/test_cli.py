"""The command line end to end, as a user runs it, in a temporary folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from moodsong.cli import main
from moodsong.models.generate import SHIPPED_MODELS
from moodsong.representation.pianoroll import held, midi_to_roll, write_midi


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def songs(tmp_path):
    folder = tmp_path / "songs"
    rng = np.random.default_rng(0)
    for i in range(6):
        roll = np.zeros((64, 156), np.uint8)
        for t in range(0, 64, 4):
            chord = [36, 40, 43] if (t // 8) % 2 == 0 else [41, 45, 48]
            for p in chord:
                roll[t : t + 4, p] = 1
                roll[t, 78 + p] = 1
            roll[t, 78 + 55 + rng.integers(3)] = 1
        write_midi(roll, folder / f"song{i}.mid")
    return folder


def test_every_command_has_help_with_examples():
    for cmd in main.commands:
        out = run(cmd, "--help").output
        assert "Usage:" in out and "Example" in out, cmd


def test_python_dash_m_runs_the_same_command_line():
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "moodsong", "info", "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert out.startswith("Usage: moodsong info") and "Example" in out


@pytest.mark.slow
def test_prepare_train_generate_info(songs, tmp_path):
    out = run("prepare", songs).output
    assert "6 pieces" in out
    run("train", songs, "--out", tmp_path / "run", "--epochs", 30, "--lr", 0.05, "--batch-size", 10,
        "--hidden", 20, "--checkpoint-every", 10)
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["epoch"] == 30 and meta["model_type"] == "rbm"
    assert len(meta["history"]) == 30
    res = run("generate", "--model", tmp_path / "run" / "model.json", "--out", tmp_path / "gen", "--bars", 2,
              "--seed", 3, "--pieces", 2, "--audio", "wav", "--fragments")
    assert "chords" in res.output and "key" in res.output
    for stem in ("piece-0", "piece-1"):
        roll = midi_to_roll(tmp_path / "gen" / f"{stem}.mid")
        assert held(roll).sum() > 0 and roll.shape[0] <= 2 * 16
        assert (tmp_path / "gen" / f"{stem}.wav").stat().st_size > 1000
        assert (tmp_path / "gen" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "gen" / "piece-0-fragments").glob("fragment-*.mid"))
    # --seed reproduces the same MIDI
    run("generate", "--model", tmp_path / "run", "--out", tmp_path / "gen2", "--bars", 2, "--seed", 3,
        "--pieces", 2, "--audio", "none", "--no-picture")
    assert (tmp_path / "gen2" / "piece-1.mid").read_bytes() == (tmp_path / "gen" / "piece-1.mid").read_bytes()
    info = json.loads(run("info", tmp_path / "run" / "model.json", "--json").output)
    assert info["model type"] == "rbm" and info["epochs trained"] == 30
    info = json.loads(run("info", tmp_path / "gen" / "piece-0.mid", "--json").output)
    assert info["notes"] > 0 and info["tempo (qpm)"] == 110.0
    # the emotion heard in the music, by the shipped estimator
    assert -1 <= info["valence"] <= 1 and -1 <= info["arousal"] <= 1
    assert info["quadrant"][:2] in ("Q1", "Q2", "Q3", "Q4")
    assert info["reads as"] in ("a played performance", "a score or a lone melody") and info["key"]
    # resume extends the run; a second plain train refuses to overwrite
    run("train", songs, "--out", tmp_path / "run", "--epochs", 35, "--lr", 0.05, "--batch-size", 10,
        "--hidden", 20, "--resume")
    assert json.loads((tmp_path / "run" / "model.json").read_text())["epoch"] == 35
    r = run("train", songs, "--out", tmp_path / "run", "--epochs", 5, "--hidden", 20, ok=False)
    assert r.exit_code == 2 and "--resume" in r.output


@pytest.mark.parametrize("name", [None, *SHIPPED_MODELS])
def test_generate_with_each_shipped_model(tmp_path, name):
    args = ["generate", "--out", tmp_path, "--bars", 2, "--seed", 1, "--audio", "none", "--no-picture"]
    res = run(*args, *([] if name is None else ["--model", name]))
    assert "chords" in res.output
    roll = midi_to_roll(tmp_path / "piece.mid")
    assert held(roll).sum() > 0


def test_user_errors_are_one_clear_line(tmp_path):
    (tmp_path / "empty").mkdir()
    text = tmp_path / "fake.mid"
    text.write_text("hello")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"\x00" * 10)
    (tmp_path / "ck" / "model.json").write_text('{"model_type": "rbm", "model_config": {"num_timesteps": 15')
    cases = [
        (("prepare", tmp_path / "nowhere"), "no such file or folder"),
        (("prepare", tmp_path / "empty"), "no MIDI files"),
        (("info", text), "not a MIDI file"),
        (("generate", "--model", tmp_path / "ck" / "model.json", "--out", tmp_path / "o"), "corrupt or truncated"),
        (("generate", "--model", tmp_path / "missing.json", "--out", tmp_path / "o"), "no model checkpoint"),
        (("generate", "--bars", 0, "--out", tmp_path / "o"), "at least 1"),
        (("generate", "--fragments", "--out", tmp_path / "o"), "window model"),
    ]
    for args, message in cases:
        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
    assert not (tmp_path / "o").exists()  # a failed command leaves no partial output
