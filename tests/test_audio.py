"""Audio rendering, playback and write_piece: real SoundFont audio with the expected content."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import symusic
from click.testing import CliRunner

from moodsong.cli import main
from moodsong.errors import MoodsongError
from moodsong.render import audio as au
from moodsong.render.outputs import write_piece

SR = au.SAMPLE_RATE


def make_score(notes, qpm=120.0, tpq=480, program=0, drums=()):
    """Score from ``(start_q, dur_q, pitch, velocity)`` notes (quarters); drums is a list of the same."""
    s = symusic.Score(tpq)
    s.tempos.append(symusic.Tempo(0, qpm))
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    for prog, is_drum, ns in ((program, False, notes), (0, True, drums)):
        if not ns:
            continue
        t = symusic.Track("drums" if is_drum else "piano", prog, is_drum)
        for start, dur, pitch, vel in ns:
            t.notes.append(symusic.Note(int(start * tpq), int(dur * tpq), pitch, vel))
        s.tracks.append(t)
    return s


def spectrum_peaks(x: np.ndarray, sr: int, k: int = 8, min_sep_hz: float = 15.0) -> list[float]:
    """Frequencies (Hz) of the k largest spectral peaks of a mono signal, at least min_sep_hz apart."""
    X = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    f = np.fft.rfftfreq(len(x), 1 / sr)
    band = (f > 50) & (f < 5000)
    X, f = X[band], f[band]
    peaks: list[float] = []
    for i in np.argsort(X)[::-1]:
        if all(abs(f[i] - p) > min_sep_hz for p in peaks):
            peaks.append(float(f[i]))
        if len(peaks) == k:
            break
    return peaks


@pytest.fixture(params=["midirenderer", "fluidsynth"])
def renderer(request):
    reason = au.available_renderers()[request.param]
    if reason:
        pytest.skip(f"renderer {request.param} unavailable here: {reason}")
    return request.param


def test_duration_is_midi_length_plus_tail_and_not_silent(renderer):
    score = make_score([(0, 1, 60, 90), (1, 1, 64, 90), (2, 2, 67, 90)], qpm=90)
    end_s = 4 * 60 / 90
    a = au.render(score, renderer=renderer, tail_s=1.25)
    assert a.sample_rate == SR and a.samples.shape == (round((end_s + 1.25) * SR), 2)
    assert a.duration_s == pytest.approx(end_s + 1.25, abs=1 / SR)
    assert a.samples.dtype == np.float32
    music = a.samples[: int(end_s * SR)]
    assert np.sqrt(np.mean(music**2)) > 0.01  # clearly audible, not silence
    # The tail rings out quieter than the music, and fades towards silence.
    assert np.abs(a.samples[-int(0.1 * SR) :]).max() < np.abs(music).max()


def test_a4_spectrum_peaks_at_440(renderer):
    a = au.render(make_score([(0, 4, 69, 100)]), renderer=renderer)
    x = a.samples[int(0.1 * SR) : int(1.5 * SR)].mean(axis=1)
    assert spectrum_peaks(x, SR, k=1)[0] == pytest.approx(440.0, rel=0.02)


def test_c_major_triad_shows_c_e_g(renderer):
    a = au.render(make_score([(0, 4, 60, 100), (0, 4, 64, 100), (0, 4, 67, 100)]), renderer=renderer)
    x = a.samples[int(0.1 * SR) : int(1.5 * SR)].mean(axis=1)
    peaks = spectrum_peaks(x, SR, k=6)
    for name, hz in (("C4", 261.63), ("E4", 329.63), ("G4", 392.0)):
        assert any(abs(p - hz) / hz < 0.02 for p in peaks), f"no {name} peak among {peaks}"


def test_peak_normalised_without_clipping(renderer, tmp_path):
    # A loud, dense chord that would clip a plain mix.
    notes = [(0, 2, p, 127) for p in (36, 48, 55, 60, 64, 67, 72, 76, 79, 84)]
    a = au.render(make_score(notes), renderer=renderer, peak_dbfs=-1.0)
    assert a.peak == pytest.approx(10 ** (-1 / 20), rel=1e-3)
    data, sr = soundfile.read(a.write(tmp_path / "loud.wav"), dtype="float32")
    assert sr == SR and data.shape[1] == 2 and np.abs(data).max() <= 1.0


def test_tempo_velocity_and_drums(renderer):
    # At 60 qpm a note at quarter 2 starts at 2.0 s; before it there is only the earlier soft note.
    score = make_score([(0, 1, 60, 25), (2, 1, 60, 120)], qpm=60, drums=[(0, 1, 36, 100)])
    a = au.render(score, renderer=renderer)
    soft = a.samples[int(0.05 * SR) : int(0.5 * SR)]
    loud = a.samples[int(2.05 * SR) : int(2.5 * SR)]
    gap = a.samples[int(1.7 * SR) : int(1.95 * SR)]
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(loud) > 1.5 * rms(soft)  # velocity dynamics
    assert rms(gap) < 0.3 * rms(loud)  # the second note waits for its time


def test_file_formats_round_trip(tmp_path):
    a = au.render(make_score([(0, 1, 60, 80)]), renderer="midirenderer")
    for suffix, subtype in ((".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS")):
        info = soundfile.info(a.write(tmp_path / f"x{suffix}"))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 2, subtype)
        assert info.duration == pytest.approx(a.duration_s, abs=0.01)
    with pytest.raises(MoodsongError, match="unknown audio format"):
        a.write(tmp_path / "x.aiff")


def test_user_errors(tmp_path):
    with pytest.raises(MoodsongError, match="no notes"):
        au.render(make_score([]))
    with pytest.raises(MoodsongError, match="no such SoundFont"):
        au.render(make_score([(0, 1, 60, 80)]), soundfont=tmp_path / "missing.sf2")
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont at all")
    with pytest.raises(MoodsongError, match="not a SoundFont"):
        au.render(make_score([(0, 1, 60, 80)]), soundfont=bad)
    with pytest.raises(MoodsongError, match="unknown renderer"):
        au.render(make_score([(0, 1, 60, 80)]), renderer="timidity")


def test_default_soundfont_is_a_general_midi_sf2():
    path = au.default_soundfont()
    assert path.name == "TimGM6mb.sf2" and path.read_bytes()[8:12] == b"sfbk"


def test_play_says_clearly_when_no_device(monkeypatch, tmp_path):
    monkeypatch.setattr(au, "find_audio_device", lambda: None)
    mid = tmp_path / "a.mid"
    make_score([(0, 1, 60, 80)]).dump_midi(str(mid))
    result = CliRunner().invoke(main, ["play", str(mid)])
    assert result.exit_code == 2
    assert "no audio output device" in result.output


def test_play_renders_and_hands_the_file_to_the_device(tmp_path):
    played = []

    class Recorder(au.AudioDevice):
        def play(self, path):
            played.append(soundfile.info(str(path)))

    au.play(make_score([(0, 1, 69, 80)]), device=Recorder("recorder"), renderer="midirenderer")
    assert len(played) == 1 and played[0].samplerate == SR and played[0].channels == 2


def test_find_audio_device_without_audio_hardware(monkeypatch):
    monkeypatch.setattr(au, "_sound_server", lambda: False)
    monkeypatch.setattr(au, "_alsa_cards", lambda: False)
    monkeypatch.setitem(__import__("sys").modules, "sounddevice", None)  # as if not installed
    monkeypatch.setattr(au.shutil, "which", lambda name: None if name == "afplay" else f"/usr/bin/{name}")
    assert au.find_audio_device() is None


def test_cli_render(tmp_path):
    mid = tmp_path / "song.mid"
    make_score([(0, 2, 60, 80), (2, 2, 67, 80)]).dump_midi(str(mid))
    result = CliRunner().invoke(main, ["render", str(mid), "--renderer", "midirenderer", "--tail", "1"])
    assert result.exit_code == 0, result.output
    info = soundfile.info(str(tmp_path / "song.wav"))
    assert info.samplerate == SR and info.duration == pytest.approx(2 + 1, abs=0.01)
    result = CliRunner().invoke(main, ["render", str(tmp_path / "nope.mid")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_write_piece_writes_all_outputs_and_summary(tmp_path):
    from PIL import Image

    chords = [(0, 4, (48, 60, 64, 67)), (4, 4, (45, 57, 60, 64)), (8, 4, (41, 57, 60, 65)),
              (12, 4, (43, 55, 59, 62, 65))]
    score = make_score([(s, d, p, 80) for s, d, ps in chords for p in ps], qpm=100)
    report = write_piece(score, tmp_path / "out", "piece", renderer="midirenderer")
    assert report.midi.read_bytes()[:4] == b"MThd"
    assert soundfile.info(str(report.audio)).samplerate == SR
    assert Image.open(report.png).size == (1600, 700)
    assert report.chords == ["C", "Am", "F", "G7"]
    assert report.tempo_qpm == 100 and report.duration_s == pytest.approx(16 * 0.6, abs=1e-3)
    text = report.summary()
    assert "C | Am | F | G7" in text and report.key in text and "100 qpm" in text and "9.6 s" in text
    # MIDI round trip keeps every note.
    assert sum(len(t.notes) for t in symusic.Score(str(report.midi)).tracks) == 17
    none = write_piece(score, tmp_path / "out2", "p", audio=None, picture=False)
    assert none.audio is None and none.png is None
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["p.mid"]
