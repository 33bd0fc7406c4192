"""The numpy polyphase resampler in moodsong.render.audio against scipy.signal.resample_poly."""

from __future__ import annotations

import numpy as np
import pytest

from moodsong.render.audio import resample_poly


def _tone(n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    left = 0.6 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 5000.0 * t)
    right = 0.5 * np.sin(2 * np.pi * 261.63 * t + 0.3)
    return np.stack([left, right], axis=1).astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 159, 160, 161, 4801, 48000])
@pytest.mark.parametrize("rates", [(44100, 48000), (48000, 44100), (22050, 48000), (16000, 48000)])
def test_resample_poly_matches_scipy(n, rates):
    signal = pytest.importorskip("scipy.signal")
    rate_out, rate_in = rates
    x = _tone(n, rate_in)
    from math import gcd

    g = gcd(rate_out, rate_in)
    expected = signal.resample_poly(x.astype(np.float64), rate_out // g, rate_in // g, axis=0)
    got = resample_poly(x, rate_out, rate_in)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_resample_poly_keeps_a_tone():
    """Without scipy: a 440 Hz tone at 48 kHz is a 440 Hz tone of the same level at 44.1 kHz."""
    x = _tone(48000, 48000)[:, 1:]  # the 261.63 Hz channel alone, 1 s
    y = resample_poly(x, 44100, 48000)[:, 0]
    assert y.shape == (44100,)
    middle = y[2000:-2000]
    t = np.arange(2000, 44100 - 2000) / 44100
    np.testing.assert_allclose(middle, 0.5 * np.sin(2 * np.pi * 261.63 * t + 0.3), atol=2e-3)


def test_resample_poly_one_dimensional_and_same_rate():
    x = np.linspace(-1, 1, 1000)
    assert resample_poly(x, 44100, 48000).shape == (919,)
    np.testing.assert_array_equal(resample_poly(x, 48000, 48000), x)


def test_render_does_not_import_scipy():
    """Rendering a piece (midirenderer at 48 kHz -> 44.1 kHz) leaves scipy.signal unimported."""
    import subprocess
    import sys

    code = (
        "import sys, symusic\n"
        "from moodsong.render.audio import render\n"
        "s = symusic.Score(480)\n"
        "t = symusic.Track(program=0)\n"
        "t.notes.append(symusic.Note(0, 480, 60, 90))\n"
        "s.tracks.append(t)\n"
        "a = render(s, renderer='midirenderer')\n"
        "assert a.sample_rate == 44100 and a.samples.shape[1] == 2\n"
        "print('scipy.signal' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the last line: pyfluidsynth, where installed, prints where it found its library on import
    assert out.stdout.strip().splitlines()[-1] == "False"
