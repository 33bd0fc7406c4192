"""The music-emotion CNN scores pieces in numpy with the torch model's outputs, and without torch."""

from __future__ import annotations

import numpy as np
from test_lazy_imports import loaded_after


def random_piece(rng, n):
    on = np.sort(rng.uniform(0, 40, n))
    return on, rng.uniform(0.05, 3, n), rng.integers(21, 108, n), rng.integers(1, 127, n)


def test_numpy_forward_matches_torch():
    import torch

    from moodsong.emotion.music import MusicEmotionEstimator
    from moodsong.emotion.music_cnn import MusicCNN, cnn_logits, note_frames

    ens = MusicEmotionEstimator.load_default().sequence_
    rng = np.random.default_rng(0)
    for n in (1, 7, 300):  # a piece shorter than the receptive field, and a long one
        x = note_frames(*random_piece(rng, n), hop=ens.config.hop)
        for state in ens.nets:
            net = MusicCNN(ens.config)
            net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
            with torch.no_grad():
                want = net.eval()(torch.from_numpy(x)[None])[0].numpy()
            np.testing.assert_allclose(cnn_logits(state, x), want, atol=1e-5)
    p = ens.predict_proba(*random_piece(rng, 50))
    assert p.shape == (4,) and abs(p.sum() - 1) < 1e-12


def test_scoring_a_piece_imports_no_torch():
    """A fresh process scores a piece without torch, and gets what this process (torch loaded) gets."""
    from moodsong.emotion.music import MusicEmotionEstimator

    setup = ("import numpy as np\nfrom moodsong.emotion.music import MusicEmotionEstimator, NoteArrays\n"
             "rng = np.random.default_rng(0)\n"
             "n = NoteArrays(np.sort(rng.uniform(0, 20, 80)), rng.uniform(0.1, 1, 80), rng.integers(40, 80, 80),"
             " rng.integers(30, 100, 80))\n")
    scope: dict = {}
    exec(setup, scope)
    want = MusicEmotionEstimator.load_default().predict_notes(scope["n"])
    code = (setup + "e = MusicEmotionEstimator.load_default().predict_notes(n)\n"
            f"assert e.quadrant == {want.quadrant}\n"
            f"assert np.allclose(e.probabilities, {list(map(float, want.probabilities))!r}, atol=1e-6)")
    assert loaded_after(code) == set()

