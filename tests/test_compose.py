"""Emotion-fitting music: the conditional RBM, surface steering, candidate selection, ``moodsong compose``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from moodsong.cli import main
from moodsong.emotion import quadrant_center
from moodsong.emotion.music import MusicEmotionEstimator, key_estimate, score_notes
from moodsong.emotion.steer import MAJOR_SCALE, MINOR_SCALE, apply_surface, surface_for
from moodsong.errors import MoodsongError
from moodsong.models.checkpoint import load_checkpoint, save_checkpoint
from moodsong.models.conditional_rbm import (
    ConditionalRBM,
    ConditionalRBMConfig,
    condition_vector,
    fit_conditional_rbm,
    sample_roll,
)
from moodsong.pipeline import ComposeRequest, compose, generate_candidates
from moodsong.representation.pianoroll import PianoRollConfig

SMALL = PianoRollConfig(lowest_pitch=60, num_pitches=12)


# -- conditional RBM ------------------------------------------------------------------


def _toy_data(n=600, seed=0):
    """Condition 0: low pitches C..E sound; condition 1: high pitches G..B. Windows of 4 steps."""
    rng = np.random.default_rng(seed)
    T, P = 4, SMALL.num_pitches
    X = np.zeros((n, T, 2 * P), np.uint8)
    c = rng.integers(0, 2, n)
    for i in range(n):
        cols = rng.choice([0, 2, 4] if c[i] == 0 else [7, 9, 11], size=2, replace=False)
        X[i, :, cols] = 1
        X[i, 0, P + cols] = 1
    C = np.zeros((n, 4), np.float32)
    C[np.arange(n), c] = 1
    return X.reshape(n, -1), C, c


def test_conditional_rbm_learns_and_condition_controls_samples(tmp_path):
    X, C, c = _toy_data()
    cfg = ConditionalRBMConfig(num_timesteps=4, num_hidden=16, num_conditions=4, pianoroll=SMALL)
    model, hist = fit_conditional_rbm(X, C, cfg, epochs=15, batch_size=32, lr=0.1, seed=0, progress=False)
    assert hist[-1] < 0.6 * hist[0]  # learning reduces reconstruction error
    # Data is more likely under its own condition than under the other one.
    Xt, Ct = torch.as_tensor(X[:100], dtype=torch.float32), torch.as_tensor(C[:100])
    Cswap = Ct[:, [1, 0, 2, 3]]
    assert (model.free_energy(Xt, Ct) < model.free_energy(Xt, Cswap)).float().mean() > 0.9
    # Samples follow the condition: low pitches under 0, high under 1.
    g = torch.Generator().manual_seed(0)
    P = SMALL.num_pitches
    for cond, lo in ((0, True), (1, False)):
        roll = sample_roll(model, np.eye(4)[cond], 32, gibbs_steps=30, generator=g)
        held = roll[:, :P].sum(0)
        low, high = held[:6].sum(), held[6:].sum()
        assert (low > 3 * high) if lo else (high > 3 * low)
    # Save / load round trip (float32 keeps it exact).
    save_checkpoint(model, tmp_path / "m", dtype=torch.float32)
    again, meta, _ = load_checkpoint(tmp_path / "m")
    assert isinstance(again, ConditionalRBM) and meta["model_type"] == "conditional_rbm"
    torch.testing.assert_close(again.free_energy(Xt, Ct), model.free_energy(Xt, Ct))


def test_bad_model_and_condition_vector(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(MoodsongError):
        load_checkpoint(tmp_path / "x")
    w = condition_vector(0.9, 0.9)
    assert w.argmax() == 0 and w[0] > 0.9 and abs(w.sum() - 1) < 1e-9
    assert np.allclose(condition_vector(0, 0), 0.25)


def test_conditional_wavenet_learns_and_condition_controls_samples():
    """The compose path with a WaveNet-NADE: condition 0 (Q1) -> low pitches, condition 1 (Q2) -> high ones."""
    from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE
    from moodsong.pipeline import load_conditional_model, sample_conditional  # noqa: F401 (API under test)

    X, C, c = _toy_data(n=256)
    P = SMALL.num_pitches
    rep = {"kind": "note-state", "lowest_pitch": SMALL.lowest_pitch, "num_pitches": P, "steps_per_quarter": 4}
    torch.manual_seed(0)
    model = WaveNetNADE(WaveNetConfig(num_visible=2 * P, channels=16, skip_channels=16, dilations=[1, 2],
                                      nade_hidden=16, dropout=0.0, cond_dim=4, representation=rep))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    v, cond = torch.as_tensor(X.reshape(len(X), 4, 2 * P), dtype=torch.float32), torch.as_tensor(C)
    for _ in range(120):
        i = torch.randint(0, len(X), (64,))
        loss = model.loss(v[i], cond=cond[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for quad, lo in ((1, True), (2, False)):
        roll = sample_conditional(model, *quadrant_center(quad), 64, generator=torch.Generator().manual_seed(quad))
        held = roll[:, :P].sum(0)
        low, high = held[:6].sum(), held[6:].sum()
        assert (low > 3 * high) if lo else (high > 3 * low), (quad, low, high)


def test_load_conditional_model_refuses_models_without_an_emotion_condition(tmp_path):
    from importlib import resources

    from moodsong.pipeline import load_conditional_model

    with pytest.raises(MoodsongError, match="not an emotion-conditional model"):
        load_conditional_model(str(resources.files("moodsong") / "data" / "pop_wavenet"))
    with pytest.raises(MoodsongError):
        load_conditional_model(str(tmp_path / "missing"))


# -- steering -----------------------------------------------------------------------


def test_surface_rules_move_the_right_way():
    q = {k: surface_for(*quadrant_center(k)) for k in (1, 2, 3, 4)}
    assert min(q[1].qpm, q[2].qpm) > max(q[3].qpm, q[4].qpm)
    assert min(q[1].velocity, q[2].velocity) > max(q[3].velocity, q[4].velocity)
    assert q[1].mode == q[4].mode == "major" and q[2].mode == q[3].mode == "minor"
    assert q[1].register_mean > q[3].register_mean
    assert min(q[1].keep_fraction, q[2].keep_fraction) > max(q[3].keep_fraction, q[4].keep_fraction)
    assert surface_for(0, 0).mode is None


def test_apply_surface_snaps_to_mode_and_sets_tempo_instrument():
    rng = np.random.default_rng(0)
    cfg = PianoRollConfig()
    roll = np.zeros((64, cfg.width), np.uint8)
    for t in range(0, 64, 2):  # random chromatic notes around middle C
        for p in rng.integers(55, 72, 3):
            roll[t : t + 2, p - cfg.lowest_pitch] = 1
            roll[t, cfg.num_pitches + p - cfg.lowest_pitch] = 1
    for quad, scale in ((1, MAJOR_SCALE), (3, MINOR_SCALE)):
        params = surface_for(*quadrant_center(quad))
        score, info = apply_surface(roll, params, cfg)
        notes = score_notes(score)
        tonic = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"].index(info["key"].split()[0])
        assert set(((notes.pitch - tonic) % 12).tolist()) <= set(scale)
        assert score.tempos[0].qpm == pytest.approx(params.qpm, abs=0.01)
        assert score.tracks[0].program == params.program
        assert abs(notes.pitch.mean() - params.register_mean) < 3


# -- the shipped models: conditioning + steering, measured by the estimator --------


@pytest.fixture(scope="module")
def per_quadrant():
    """Six steered pieces per quadrant from the shipped conditional RBM (no selection)."""
    est = MusicEmotionEstimator.load_default()
    out = {}
    for q in (1, 2, 3, 4):
        v, a = quadrant_center(q)
        _, cands = generate_candidates(v, a, bars=8, count=6, seed=100, estimator=est)
        out[q] = cands
    return out


@pytest.mark.slow
def test_generated_pieces_land_in_requested_quadrant(per_quadrant):
    for q, cands in per_quadrant.items():
        hits = sum(c.estimate.quadrant == q for c in cands)
        # Chance is 1/4 (1.5 of 6); require at least half.
        assert hits >= 3, f"Q{q}: only {hits}/6 estimated in Q{q}"


@pytest.mark.slow
def test_independent_features_move_the_right_way(per_quadrant):
    def mean(q, name):
        return np.mean([c.estimate.features[name] for c in per_quadrant[q]])

    def major_share(q):
        return np.mean([key_estimate(score_notes(c.score))[1] == "major" for c in per_quadrant[q]])

    assert min(major_share(1), major_share(4)) > max(major_share(2), major_share(3))
    assert min(mean(1, "onsets_per_s"), mean(2, "onsets_per_s")) > max(mean(3, "onsets_per_s"), mean(4, "onsets_per_s"))
    tempo = {q: np.mean([c.score.tempos[0].qpm for c in per_quadrant[q]]) for q in per_quadrant}
    assert min(tempo[1], tempo[2]) > max(tempo[3], tempo[4])


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["emotion_wavenet", "emotion_crbm"])
def test_bare_conditional_model_differs_by_emotion(stem):
    """Without any steering the shipped conditional models alone make high-arousal targets denser than low ones."""
    from importlib import resources

    from moodsong.pipeline import load_conditional_model, sample_conditional
    from moodsong.representation.pianoroll import roll_to_notes

    model = load_conditional_model(str(resources.files("moodsong") / "data" / stem))
    density = {}
    for q in (1, 2, 3, 4):
        rolls = [sample_conditional(model, *quadrant_center(q), 128, generator=torch.Generator().manual_seed(s))
                 for s in range(6)]
        density[q] = np.mean([roll_to_notes(r)[0].size / r.shape[0] for r in rolls])  # notes per step
    assert min(density[1], density[2]) > 1.2 * max(density[3], density[4]), density


# -- compose: library and CLI --------------------------------------------------------


@pytest.mark.slow
def test_compose_writes_outputs_and_is_reproducible(tmp_path):
    req = ComposeRequest(quadrant=3, bars=4, candidates=3, seed=7, out_dir=tmp_path / "a", audio="wav")
    res = compose(req)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["target"]["quadrant"] == 3 and len(d["candidates"]) == 3 and len(d["chosen"]) == 1
    piece = d["pieces"][0]
    for kind in ("midi", "audio", "png"):
        assert (tmp_path / "a" / piece["paths"][kind].split("/")[-1]).stat().st_size > 0
    assert piece["chords"] and piece["key"] and piece["tempo_qpm"] == piece["plan"]["tempo_qpm"]
    # The chosen song is the first candidate heard in the target quadrant (else the closest to the target).
    heard = [c for c in res.candidates if c.estimate.quadrant == 3]
    best = heard[0] if heard else min(res.candidates, key=lambda c: c.distance - c.target_probability)
    assert res.chosen[0] is best
    compose(ComposeRequest(quadrant=3, bars=4, candidates=3, seed=7, out_dir=tmp_path / "b", audio=None))
    assert (tmp_path / "a" / "moodsong.mid").read_bytes() == (tmp_path / "b" / "moodsong.mid").read_bytes()


def test_compose_request_errors():
    with pytest.raises(MoodsongError, match="say what to compose"):
        compose(ComposeRequest())
    with pytest.raises(MoodsongError, match="only one"):
        compose(ComposeRequest(prompt="happy", quadrant=1))
    with pytest.raises(MoodsongError, match="valence and arousal"):
        compose(ComposeRequest(valence=2.0, arousal=0.0))
    with pytest.raises(MoodsongError, match="bars"):
        compose(ComposeRequest(quadrant=1, bars=0))
    with pytest.raises(MoodsongError, match="strength"):
        compose(ComposeRequest(quadrant=1, strength=-1.0))


@pytest.mark.slow
def test_cli_compose_prints_understanding_and_outputs(tmp_path):
    r = CliRunner().invoke(
        main,
        ["compose", "--valence", "0.6", "--arousal", "-0.5", "--out", str(tmp_path), "--bars", "4",
         "--candidates", "2", "--seed", "1", "--audio", "none"],
    )
    assert r.exit_code == 0, r.output
    for word in ("target", "plan:", "form", "candidates", "chords", "key", "tempo", "musicxml"):
        assert word in r.output
    assert r.output.index("plan:") < r.output.index("candidates")  # the plan is shown before the notes
    assert (tmp_path / "moodsong.mid").is_file() and (tmp_path / "moodsong.png").is_file()
    r = CliRunner().invoke(main, ["compose", "--quadrant", "1", "--out", str(tmp_path), "--bars", "2",
                                  "--candidates", "2", "--seed", "1", "--audio", "none", "--no-picture", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["target"]["quadrant"] == 1
    r = CliRunner().invoke(main, ["compose", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "say what to compose" in r.output


@pytest.mark.slow
def test_cli_compose_from_prompt(tmp_path):
    r = CliRunner().invoke(
        main,
        ["compose", "I want a song that expresses hope and wonder", "--out", str(tmp_path), "--bars", "4",
         "--candidates", "3", "--seed", "2", "--audio", "none", "--json"],
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["target"]["quadrant"] == 1 and d["analysis"]["keywords"]
    chosen = [c for c in d["candidates"] if c["chosen"]][0]
    assert chosen["estimate"]["quadrant"] == 1


@pytest.mark.slow
def test_cli_compose_from_voice(tmp_path):
    import shutil
    import subprocess

    pytest.importorskip("moodsong.emotion.voice")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path / "req.wav"
    subprocess.run([espeak, "-v", "en-us+m3", "-s", "130", "-w", str(wav), "play something sad and slow"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = CliRunner().invoke(main, ["compose", "--voice", str(wav), "--out", str(tmp_path), "--bars", "2",
                                  "--candidates", "2", "--seed", "1", "--audio", "none", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["source"] == "voice" and d["transcript"] and d["target"]["quadrant"] == 3
    from moodsong.emotion import voice

    # whisper hears the request a second time, slower; pocketsphinx (without moodsong[voice]) once
    assert len(d["also_heard"]) == (1 if voice._whisper_available(None) else 0)
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    r = CliRunner().invoke(main, ["compose", "--voice", str(bad), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "error:" in r.output


def test_temperature_reaches_the_sampler():
    from moodsong.pipeline import generate_candidates

    def notes(t):
        _, (c,) = generate_candidates(0.6, 0.6, bars=2, count=1, seed=4, steer=False, temperature=t)
        return 0 if c.score is None else sum(len(tr.notes) for tr in c.score.tracks)  # None: (almost) silent

    assert notes(2.5) > notes(1.0) > notes(0.5)


# -- the song model through compose ------------------------------------------------------


@pytest.mark.slow
def test_compose_song_files_plan_and_emotion(tmp_path):
    """The default (song) model: multi-track MIDI with markers, a lead sheet, a followed plan, the target quadrant."""
    import symusic
    from music21 import converter, harmony

    agree = []
    for q in (1, 3):
        res = compose(ComposeRequest(quadrant=q, seed=q, out_dir=tmp_path / str(q), audio=None, picture=False))
        d = res.to_dict()
        plan = d["pieces"][0]["plan"]
        assert d["model"] == "song" and plan["bars"] == 16 and plan["form"] == "A A' B A'"
        assert plan["key"].endswith("major" if q == 1 else "minor")
        score = symusic.Score(str(tmp_path / str(q) / "moodsong.mid"))
        assert [t.name for t in score.tracks] == ["Melody", "Accompaniment"]
        assert [m.text for m in score.markers] == [c["chord"] for c in plan["chords"]]
        assert score.time_signatures[0].numerator == 4 and len(score.key_signatures) == 1
        sheet = converter.parse(str(tmp_path / str(q) / "moodsong.musicxml"))
        assert len(sheet.recurse().getElementsByClass(harmony.ChordSymbol)) == len(plan["chords"])
        chosen = res.chosen[0]
        assert chosen.estimate.quadrant == q
        agree.append(chosen.steering["plan_followed"]["fraction"])
    assert np.mean(agree) >= 0.8


@pytest.mark.slow
def test_compose_song_controls_and_bad_input(tmp_path):
    res = compose(ComposeRequest(quadrant=2, bars=8, candidates=2, seed=3, key="D minor", tempo=150,
                                 instrument="violin,electric piano 1", form="AB"))
    song = res.chosen[0].song
    assert (song.key_name, song.qpm, song.programs, song.form) == ("D minor", 150.0, (40, 4), "A B")
    again = compose(ComposeRequest(quadrant=2, bars=8, candidates=2, seed=3, key="D minor", tempo=150,
                                   instrument="violin,electric piano 1", form="AB"))
    np.testing.assert_array_equal(song.melody, again.chosen[0].song.melody)
    for kwargs, msg in (({"key": "Q major"}, "unknown key"), ({"instrument": "kazooka"}, "unknown instrument"),
                        ({"form": "ABC"}, "cannot be split"), ({"primer": str(tmp_path / "none.mid")}, "no such"),
                        ({"model": "emotion-wavenet", "key": "C major"}, "need the song model")):
        out = tmp_path / msg.replace(" ", "_")
        with pytest.raises(MoodsongError, match=msg):
            compose(ComposeRequest(quadrant=1, out_dir=out, **kwargs))
        assert not out.exists()  # nothing half-written
    r = CliRunner().invoke(main, ["compose", "--quadrant", "1", "--key", "H dur", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "unknown key" in r.output


@pytest.mark.slow
def test_compose_piano_models_stay_available(tmp_path):
    res = compose(ComposeRequest(quadrant=1, bars=2, candidates=1, seed=1, model="emotion-wavenet", tempo=90,
                                 instrument="flute"))
    assert res.model_kind == "piano" and res.chosen[0].score.tempos[0].qpm == pytest.approx(90, abs=1e-3)
    assert res.chosen[0].score.tracks[0].program == 73
