"""RNN-RBM and WaveNet-NADE: exact likelihoods, causality, learning, generation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from moodsong.errors import MoodsongError
from moodsong.evaluation.ais import exact_log_partition
from moodsong.evaluation.likelihood import sequence_nll
from moodsong.models.frames import BENCHMARK_REPRESENTATION, frames_to_roll, roll_to_frames
from moodsong.models.generate import generate_frames, generate_roll
from moodsong.models.rnnrbm import RNNRBM, RNNRBMConfig
from moodsong.models.wavenet import CachedGenerator, WaveNetConfig, WaveNetNADE
from moodsong.representation.pianoroll import midi_to_roll, roll_to_notes, write_midi
from moodsong.training.sequence import TemporalTrainConfig, train_sequence_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # thousands of tiny sequential ops


def _tiny_wavenet(V=3, cond_dim=0, seed=0):
    torch.manual_seed(seed)
    m = WaveNetNADE(WaveNetConfig(num_visible=V, channels=6, skip_channels=6, kernel_size=2, dilations=[1, 2, 4],
                                  nade_hidden=5, dropout=0.0, cond_dim=cond_dim)).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.7)  # large weights so any leak or normalisation error shows
    return m


def _tiny_rnnrbm(V=4, H=5, cond_dim=0, seed=0):
    torch.manual_seed(seed)
    m = RNNRBM(RNNRBMConfig(num_visible=V, num_hidden=H, num_recurrent=6, cond_dim=cond_dim)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.7)
    return m


def _all_binary(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


# ---------------------------------------------------------------- exact likelihood


def test_wavenet_nll_is_exact_brute_force_sum_over_all_sequences():
    V, T = 3, 3
    m = _tiny_wavenet(V, cond_dim=2)
    cond = torch.tensor([[0.3, -1.0]], dtype=torch.float64)
    seqs = _all_binary(V * T).reshape(-1, T, V)  # all 512 pieces of 3 frames x 3 pitches
    with torch.no_grad():
        lp = m.log_prob(seqs, cond=cond.expand(len(seqs), -1)).sum(1)
    # a normalised distribution over all pieces of this length
    assert abs(float(torch.logsumexp(lp, 0))) < 1e-9
    # and each piece's value is the chain rule computed the slow way: one pitch at a time
    piece = seqs[137]
    b, c = m.nade_biases(piece[None], cond)
    slow = 0.0
    for t in range(T):
        a = c[0, t].clone()
        for i in range(V):
            p1 = torch.sigmoid(b[0, t, i] + torch.sigmoid(a) @ m.nade_V[i])
            slow += float(torch.log(p1 if piece[t, i] else 1 - p1).detach())
            a = a + piece[t, i] * m.nade_W[i]
    assert abs(float(lp[137]) - slow) < 1e-9
    # evaluate's NLL per step is the same number
    r = sequence_nll(m, [piece.numpy()], cond=cond)
    assert abs(r["nll"] + slow / T) < 1e-9 and r["nll_stderr"] == 0


def test_sparse_nade_logits_equal_the_dense_form_values_and_gradients():
    # nade_logits computes one hidden vector per nonzero pitch; the dense form computes one per pitch
    torch.manual_seed(1)
    m = WaveNetNADE(WaveNetConfig(num_visible=40, channels=4, skip_channels=4, dilations=[1], nade_hidden=7)).double()
    v = (torch.rand(50, 40, dtype=torch.float64) < 0.15).double()
    v[0], v[1], v[2, :] = 0.0, 1.0, 0.0  # silence, every key, and a frame whose only note is the top key
    v[2, -1] = 1.0
    v[3] *= 0.5  # not only 0/1 frames: each nonzero pitch adds its value times its weight row
    b = torch.randn(50, 40, dtype=torch.float64)
    c = torch.randn(50, 7, dtype=torch.float64, requires_grad=True)

    def dense(v, b, c):
        contrib = v[:, :, None] * m.nade_W[None]
        a = c[:, None, :] + torch.cumsum(contrib, 1) - contrib
        return b + (torch.sigmoid(a) * m.nade_V[None]).sum(-1)

    sparse_out, dense_out = m.nade_logits(v, b, c), dense(v, b, c)
    assert torch.allclose(sparse_out, dense_out, atol=1e-12)
    params = [m.nade_W, m.nade_V, c]
    g1 = torch.autograd.grad(sparse_out.sin().sum(), params)
    g2 = torch.autograd.grad(dense_out.sin().sum(), params)
    assert all(torch.allclose(x, y, atol=1e-10) for x, y in zip(g1, g2))
    assert m.nade_logits(v[:0], b[:0], c[:0]).shape == (0, 40)


def test_rnnrbm_ais_nll_matches_exact_partition_functions():
    m = _tiny_rnnrbm(V=6, H=5)
    rng = np.random.default_rng(0)
    seqs = [(rng.random((7, 6)) < 0.4).astype(np.float64), (rng.random((5, 6)) < 0.4).astype(np.float64)]
    exact_total, steps = 0.0, 0
    with torch.no_grad():
        for s in seqs:
            v = torch.from_numpy(s)[None]
            fe, bv, bh = m.free_energies(v)
            exact_total += float((fe[0] + exact_log_partition(m.W, bv[0], bh[0])).sum())
            steps += s.shape[0]
    r = sequence_nll(m, seqs, ais_chains=100, ais_betas=500, seed=0)
    assert r["num_steps"] == steps
    assert abs(r["nll"] - exact_total / steps) < 0.02
    assert 0 < r["nll_stderr"] < 0.02


# ---------------------------------------------------------------- causality


@pytest.mark.parametrize("make", [_tiny_wavenet, _tiny_rnnrbm])
def test_changing_a_future_frame_never_changes_past_outputs(make):
    m = make()
    V = m.config.num_visible
    v = torch.bernoulli(torch.full((2, 12, V), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    biases = m.nade_biases if isinstance(m, WaveNetNADE) else m.step_biases
    with torch.no_grad():
        before = biases(v)
        for t0 in (0, 5, 11):
            w = v.clone()
            w[:, t0] = 1 - w[:, t0]
            after = biases(w)
            for x, y in zip(before, after):
                assert torch.equal(x[:, : t0 + 1], y[:, : t0 + 1])  # step t0's own state sees only frames < t0
                if t0 < 11:
                    assert not torch.allclose(x[:, t0 + 1:], y[:, t0 + 1:])


def test_cached_generation_equals_full_forward():
    m = _tiny_wavenet(V=4, cond_dim=2)
    v = torch.bernoulli(torch.full((2, 20, 4), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    cond = torch.randn(2, 2, dtype=torch.float64)
    with torch.no_grad():
        b_full, c_full = m.nade_biases(v, cond)
        g = CachedGenerator(m, batch=2, cond=cond)
        steps = []
        for t in range(20):
            steps.append(g.biases())
            g.push(v[:, t])
    assert torch.allclose(torch.stack([s[0] for s in steps], 1), b_full)
    assert torch.allclose(torch.stack([s[1] for s in steps], 1), c_full)


# ---------------------------------------------------------------- generation


@pytest.mark.parametrize("make", [_tiny_wavenet, _tiny_rnnrbm])
def test_generation_returns_n_frames_in_range_and_continues_a_primer(make, tmp_path):
    m = make()
    m.config.representation = {"kind": "keys", "lowest_pitch": 60, "num_pitches": m.config.num_visible,
                               "steps_per_quarter": 1}
    f = generate_frames(m, 40, seed=3, temperature=1.2)
    assert f.shape == (40, m.config.num_visible) and f.dtype == np.uint8 and set(np.unique(f)) <= {0, 1}
    assert np.array_equal(f, generate_frames(m, 40, seed=3, temperature=1.2))  # reproducible with a seed
    roll = generate_roll(m, 16, seed=1, primer=frames_to_roll(f[:5], m.config.representation))
    config = m.config.pianoroll
    assert roll.shape == (16, 2 * m.config.num_visible)
    path = write_midi(roll, tmp_path / "piece.mid", config)
    back = midi_to_roll(path, config)
    cols, _, _ = roll_to_notes(back)
    assert cols.size == 0 or (cols.min() >= 0 and cols.max() < m.config.num_visible)
    assert np.array_equal(roll_to_frames(back, m.config.representation)[: len(roll)] > 0,
                          roll_to_frames(roll, m.config.representation)[: len(back)] > 0)


def test_generate_roll_interface_used_by_moodsong_generate():
    m = _tiny_wavenet(V=6)
    m.config.representation = {"kind": "note-state", "lowest_pitch": 60, "num_pitches": 3, "steps_per_quarter": 4}
    roll = m.generate_roll(32, generator=torch.Generator().manual_seed(0), temperature=1.0,
                           primer=np.zeros((4, 6), np.uint8))
    assert roll.shape == (32, 6) and m.config.pianoroll.num_pitches == 3


def test_emotion_conditioning_changes_the_distribution():
    for m in (_tiny_wavenet(V=4, cond_dim=2), _tiny_rnnrbm(V=4, cond_dim=2)):
        v = torch.ones(1, 3, 4, dtype=torch.float64)
        biases = m.nade_biases if isinstance(m, WaveNetNADE) else m.step_biases
        with torch.no_grad():
            a = biases(v, torch.tensor([[1.0, 0.0]], dtype=torch.float64))[0]
            b = biases(v, torch.tensor([[0.0, 1.0]], dtype=torch.float64))[0]
        assert not torch.allclose(a, b)
        f = generate_frames(m, 5, seed=0, cond=np.array([1.0, -1.0]))
        assert f.shape == (5, 4)


def test_frames_roll_round_trip_ties_repeated_keys():
    frames = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], np.uint8)
    roll = frames_to_roll(frames, {"kind": "keys", "lowest_pitch": 60, "num_pitches": 3})
    assert np.array_equal(roll_to_frames(roll, BENCHMARK_REPRESENTATION), frames)
    cols, start, end = roll_to_notes(roll)
    assert list(zip(cols, start, end)) == [(0, 0, 2), (1, 1, 3)]


# ---------------------------------------------------------------- learning on real music


@pytest.fixture(scope="module")
def bach_frames():
    """Twenty Bach chorales from music21's built-in corpus (no ../shared), one frame per quarter note, 88 keys."""
    music21 = pytest.importorskip("music21")
    from moodsong.corpora.corpus import music21_to_roll
    from moodsong.representation.pianoroll import PianoRollConfig

    config = PianoRollConfig(21, 88, 1)
    out = []
    for path in music21.corpus.getComposer("bach")[:40]:
        try:
            r = music21_to_roll(music21.corpus.parse(path), config)
        except Exception:
            continue
        if r.shape[0] >= 16:
            out.append(roll_to_frames(r, BENCHMARK_REPRESENTATION))
        if len(out) == 20:
            break
    assert len(out) >= 10
    return out


@pytest.mark.parametrize("model_type,mc,tc", [
    ("wavenet", {"channels": 16, "skip_channels": 32, "dilations": [1, 2, 4, 8], "nade_hidden": 32, "dropout": 0.0},
     {"epochs": 4, "batch_size": 4, "lr": 3e-3}),
    ("rnnrbm", {"num_hidden": 32, "num_recurrent": 24, "cd_k": 5},
     {"epochs": 3, "batch_size": 4, "lr": 3e-3, "pretrain_epochs": 2, "val_ais_chains": 4, "val_ais_betas": 50}),
])
def test_training_lowers_validation_nll_on_bach_chorales(bach_frames, tmp_path, model_type, mc, tc):
    train, valid = bach_frames[:15], bach_frames[15:]
    model, history = train_sequence_model(model_type, train, valid, tmp_path / "run", mc,
                                          TemporalTrainConfig(patience=10, **tc), progress=False)
    first, best = history[0]["val_nll"], min(h["val_nll"] for h in history)
    untrained = sequence_nll(type(model)(type(model.config)(**{**model.config.to_dict()})), valid,
                             ais_chains=4, ais_betas=50)["nll"]
    assert best < untrained - 5  # an untrained model is near 88 * log 2 = 61 nats per step
    assert best <= first
    assert (tmp_path / "run" / "model.json").is_file() and (tmp_path / "run" / "last.json").is_file()
    # resume continues from the saved epoch
    _, history2 = train_sequence_model(model_type, train, valid, tmp_path / "run", mc,
                                       TemporalTrainConfig(patience=10, **{**tc, "epochs": tc["epochs"] + 1}),
                                       resume=True, progress=False)
    assert [h["epoch"] for h in history2] == list(range(1, tc["epochs"] + 2))


def test_resume_trains_at_the_learning_rate_asked_for(tmp_path):
    # the optimizer state saved with a run holds its learning rate; resuming with --lr must not keep the old one
    rng = np.random.default_rng(0)
    train = [(rng.random((20, 5)) < 0.3).astype(np.float32) for _ in range(4)]
    mc = {"channels": 4, "skip_channels": 4, "dilations": [1, 2], "nade_hidden": 4, "dropout": 0.0}
    train_sequence_model("wavenet", train, train[:2], tmp_path, mc, TemporalTrainConfig(epochs=1, lr=1e-2),
                         progress=False)
    train_sequence_model("wavenet", train, train[:2], tmp_path, mc, TemporalTrainConfig(epochs=2, lr=1e-3),
                         resume=True, progress=False)
    saved = torch.load(tmp_path / "last.optim.pt", weights_only=True)
    assert [g["lr"] for g in saved["param_groups"]] == [1e-3]


@pytest.mark.slow
def test_wavenet_learns_jsb_chorales(shared_data, tmp_path):
    from moodsong.training.sequence import load_frames

    pkl = shared_data / "polyphonic" / "jsb_chorales.pkl"
    train = load_frames(str(pkl), BENCHMARK_REPRESENTATION, "train")[:60]
    valid = load_frames(str(pkl), BENCHMARK_REPRESENTATION, "valid")[:20]
    mc = {"channels": 16, "skip_channels": 32, "dilations": [1, 2, 4, 8], "nade_hidden": 32, "dropout": 0.0}
    _, history = train_sequence_model("wavenet", train, valid, tmp_path / "jsb", mc,
                                      TemporalTrainConfig(epochs=4, batch_size=4, lr=5e-3), progress=False)
    assert history[-1]["val_nll"] < history[0]["val_nll"] < 61  # 61 = 88 log 2, a coin flip per key


@pytest.mark.parametrize("stem", ["jsb_wavenet", "jsb_rnnrbm", "pop_wavenet", "nottingham_wavenet", "musedata_wavenet",
                                  "piano_midi_wavenet"])
def test_shipped_models_load_generate_and_evaluate(stem):
    from importlib import resources

    from moodsong.models.generate import load_model

    path = resources.files("moodsong") / "data" / f"{stem}.json"
    if not path.is_file():
        pytest.skip(f"{stem} is not shipped")
    model, meta = load_model(str(path))
    kw = {"gibbs_steps": 5} if stem == "jsb_rnnrbm" else {}
    roll = model.generate_roll(24, generator=torch.Generator().manual_seed(0), **kw)
    assert roll.shape == (24, model.config.pianoroll.width)
    assert roll[:, : model.config.pianoroll.num_pitches].sum() > 0  # a trained model does not fall silent
    # and scores a tiny synthetic piece (a held chord, then another) with a finite, positive NLL per step
    piece = np.zeros((12, model.config.num_visible), np.float32)
    piece[:6, [3, 7, 10]] = 1.0
    piece[6:, [5, 9, 12]] = 1.0
    r = sequence_nll(model, [piece], ais_chains=4, ais_betas=20)
    assert np.isfinite(r["nll"]) and r["nll"] > 0 and r["num_steps"] == 12


def test_training_with_per_piece_conditions_learns_the_condition(tmp_path):
    rng = np.random.default_rng(0)
    eye = np.eye(2, dtype=np.float32)

    def piece(label):  # label 0: the low key held, label 1: the high key, plus noise
        f = (rng.random((24, 4)) < 0.1).astype(np.float32)
        f[:, 0 if label == 0 else 3] = 1.0
        return f

    labels = [0, 1] * 8
    train, valid = [piece(q) for q in labels[:12]], [piece(q) for q in labels[12:]]
    conds, vconds = [eye[q] for q in labels[:12]], [eye[q] for q in labels[12:]]
    torch.manual_seed(0)
    start = WaveNetNADE(WaveNetConfig(num_visible=4, channels=8, skip_channels=8, dilations=[1, 2], nade_hidden=8,
                                      dropout=0.0, cond_dim=2))
    seen = []
    tc = TemporalTrainConfig(epochs=8, batch_size=4, lr=1e-2, cond_lr=3e-2, cond_dropout=0.1, patience=100,
                             device="cpu")
    model, history = train_sequence_model("wavenet", train, valid, tmp_path / "run", tc=tc, init_model=start,
                                          conditions=conds, valid_conditions=vconds, progress=False,
                                          metrics=lambda m: seen.append(1) or {"extra": 1.0})
    assert history[0]["epoch"] == 0 and "train_loss" not in history[0]  # the starting model, validated
    assert len(seen) == len(history) and all(h["extra"] == 1.0 for h in history)
    right = sequence_nll(model, valid, cond=torch.as_tensor(np.stack(vconds)))["nll"]
    swapped = sequence_nll(model, valid, cond=torch.as_tensor(np.stack(vconds[::-1])))["nll"]
    assert right < swapped - 0.5  # the model uses each piece's own condition
    with pytest.raises(MoodsongError, match="conditions for"):
        train_sequence_model("wavenet", train, valid, tmp_path / "bad", tc=tc, conditions=conds[:3], progress=False)
