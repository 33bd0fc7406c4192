"""The renderer lookup: the quick libfluidsynth check never hides a library pyfluidsynth would load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moodsong.render import audio as au


def test_library_in_ld_library_path_counts(monkeypatch, tmp_path):
    (tmp_path / "libfluidsynth.so.3").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert au._libfluidsynth_may_exist()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the quick check is for Linux")
def test_quick_check_agrees_with_pyfluidsynth():
    """Where the check says no library, importing pyfluidsynth fails too (it would find none)."""
    if au._libfluidsynth_may_exist():
        pytest.skip("a libfluidsynth is present here")
    code = "import fluidsynth\nprint(hasattr(fluidsynth, 'Synth'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 or out.stdout.strip() == "False"
    reasons = au.available_renderers()
    assert reasons["fluidsynth"].startswith("FluidSynth unavailable")
    assert au.resolve_renderer("auto") == "midirenderer"
