"""``moodsong evaluate`` end to end on a tiny benchmark-format file, and the plain RBM's AIS likelihood."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from moodsong.cli import main
from moodsong.evaluation.ais import exact_log_partition, free_energy
from moodsong.evaluation.likelihood import frame_accuracy, load_benchmark, sequence_nll
from moodsong.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # thousands of tiny sequential ops


@pytest.fixture
def tiny_benchmark(tmp_path):
    """A benchmark-layout pickle: chord progressions (I-IV-V-I in C) with some variation, MIDI pitches."""
    rng = np.random.default_rng(0)
    chords = [(48, 60, 64, 67), (53, 60, 65, 69), (55, 59, 62, 67), (48, 60, 64, 67)]

    def piece(n):
        return [tuple(p + (12 if rng.random() < 0.1 else 0) for p in chords[(i // 2) % 4]) for i in range(n)]

    data = {"train": [piece(rng.integers(12, 24)) for _ in range(12)],
            "valid": [piece(16) for _ in range(3)],
            "test": [piece(rng.integers(10, 20)) for _ in range(4)]}
    path = tmp_path / "tiny.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path, data


@pytest.mark.slow
@pytest.mark.parametrize("model_args", [
    ["--model", "wavenet", "--channels", "8", "--dilations", "1,2,4", "--stacks", "1", "--hidden", "16",
     "--epochs", "3"],
    ["--model", "rnnrbm", "--hidden", "16", "--recurrent", "8", "--cd-k", "2", "--pretrain-epochs", "1",
     "--epochs", "2"],
])
def test_train_then_evaluate_end_to_end(tiny_benchmark, tmp_path, model_args):
    path, data = tiny_benchmark
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(main, ["train-seq", str(path), "--out", str(out), "--batch-size", "4", "--lr", "0.01",
                             "--threads", "1", "--seed", "1", *model_args])
    assert r.exit_code == 0, r.output
    assert "validation NLL" in r.output and (out / "model.json").is_file()
    r = runner.invoke(main, ["evaluate", str(out), str(path), "--json", "--ais-chains", "8", "--ais-betas", "50",
                             "--samples", "3", "--gibbs-steps", "3"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["split"] == "test" and res["num_sequences"] == 4
    assert res["num_steps"] == sum(len(s) for s in data["test"])
    assert 0 < res["nll"] < 88 * np.log(2)  # better than a fair coin per key
    assert 0 < res["accuracy"] <= 1
    assert res["nll_stderr"] >= 0 and res["method"]
    # the human-readable form too, on another split
    r = runner.invoke(main, ["evaluate", str(out / "model.json"), str(path), "--split", "valid", "--ais-chains", "4",
                             "--ais-betas", "20", "--samples", "1", "--gibbs-steps", "1"])
    assert r.exit_code == 0 and "NLL per step" in r.output and "frame-level accuracy" in r.output


@pytest.mark.parametrize("name", ["jsb-wavenet", "nottingham-wavenet", "musedata-wavenet", "piano-midi-wavenet"])
def test_evaluate_a_shipped_model_by_name_on_the_valid_split(tiny_benchmark, name):
    from moodsong.models.generate import shipped_model_path

    if not shipped_model_path(name).is_file():
        pytest.skip(f"{name} is not shipped")
    path, data = tiny_benchmark
    r = CliRunner().invoke(main, ["evaluate", name, str(path), "--split", "valid", "--samples", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["split"] == "valid" and res["num_steps"] == sum(len(s) for s in data["valid"])
    assert np.isfinite(res["nll"]) and res["nll"] > 0 and 0 <= res["accuracy"] <= 1
    assert res["method"].startswith("exact")


def test_evaluate_reports_user_errors_in_one_line(tiny_benchmark, tmp_path):
    path, _ = tiny_benchmark
    runner = CliRunner()
    r = runner.invoke(main, ["evaluate", str(tmp_path / "nothing"), str(path)])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE

    tiny = WaveNetNADE(WaveNetConfig(channels=4, skip_channels=4, dilations=[1], nade_hidden=4))
    save_checkpoint(tiny, tmp_path / "m" / "model")
    r = runner.invoke(main, ["evaluate", str(tmp_path / "m"), str(bad)])
    assert r.exit_code == 2 and "cannot read benchmark file" in r.output


def test_plain_rbm_window_likelihood_matches_exact(tiny_benchmark, tmp_path):
    from moodsong.models.rbm import RBM, RBMConfig
    from moodsong.representation.pianoroll import PianoRollConfig

    path, data = tiny_benchmark
    torch.manual_seed(0)
    # 2 steps x (2 x 6 pitches) visible bits, 8 hidden units: small enough to enumerate
    rbm = RBM(RBMConfig(num_timesteps=2, num_hidden=8, pianoroll=PianoRollConfig(60, 6, 1)))
    with torch.no_grad():
        rbm.W.normal_(0, 0.5)
        rbm.b_visible.normal_(-1, 0.5)
    save_checkpoint(rbm, tmp_path / "rbm" / "model")
    from moodsong.evaluation.likelihood import model_representation
    from moodsong.models.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(tmp_path / "rbm")
    seqs = load_benchmark(path, "test", model_representation(model))
    assert seqs[0].shape[1] == 12
    res = sequence_nll(model, seqs, ais_chains=200, ais_betas=500)
    wins = np.concatenate([s[: len(s) // 2 * 2].reshape(-1, 24) for s in seqs])
    v = torch.from_numpy(wins).double()
    exact = float((free_energy(v, rbm.W.double(), rbm.b_visible.double(), rbm.b_hidden.double()).sum()
                   + len(wins) * exact_log_partition(rbm.W, rbm.b_visible, rbm.b_hidden)[0]) / (2 * len(wins)))
    assert res["num_steps"] == 2 * len(wins)
    assert abs(res["nll"] - exact) < 0.03
    assert frame_accuracy(model, seqs)["accuracy"] is None  # a window model makes no next-step prediction


def test_moodsong_train_model_option_trains_a_whole_piece_model(tiny_benchmark, tmp_path):
    path, _ = tiny_benchmark
    r = CliRunner().invoke(main, ["train", str(path), "--model", "wavenet", "--out", str(tmp_path / "w"),
                                  "--epochs", "1", "--hidden", "8", "--batch-size", "6"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "w" / "model.json").read_text())
    assert meta["model_type"] == "wavenet" and meta["model_config"]["nade_hidden"] == 8
    assert meta["train_config"]["epochs"] == 1 and meta["train_config"]["batch_size"] == 6


def test_train_seq_starts_from_a_shipped_model(tiny_benchmark, tmp_path):
    from moodsong.models.generate import shipped_model_path

    path, _ = tiny_benchmark
    out = tmp_path / "from-jsb"
    runner = CliRunner()
    r = runner.invoke(main, ["train-seq", str(path), "--out", str(out), "--init", "jsb-wavenet", "--epochs", "1",
                             "--batch-size", "4", "--threads", "1", "--channels", "8"])
    assert r.exit_code == 0, r.output
    assert "epoch 0 (starting model)" in r.output
    shipped = json.loads(shipped_model_path("jsb-wavenet").read_text())
    meta = json.loads((out / "model.json").read_text())
    # the shipped architecture, not the --channels given: the weights come from it
    assert meta["model_config"] == shipped["model_config"]
    assert [h["epoch"] for h in meta["history"]][:1] == [0]
    r = runner.invoke(main, ["train-seq", str(path), "--out", str(out), "--init", "jsb-wavenet", "--resume"])
    assert r.exit_code != 0 and "use one of them" in r.output
