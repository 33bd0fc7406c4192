"""Hear a piece: render MIDI to audio with a General MIDI SoundFont, and play it.

Two renderers are offered, both driven by a SoundFont (``.sf2``):

- ``midirenderer``: the rustysynth SoundFont synthesizer in a self-contained
  PyPI wheel (no system libraries). It is always installed with moodsong, so a
  plain ``pip install`` produces real SoundFont audio.
- ``fluidsynth``: FluidSynth, the ecosystem's standard renderer, through
  ``pyfluidsynth``; needs the system library (Debian ``libfluidsynth3``).

``auto`` picks FluidSynth when its library is present and midirenderer
otherwise. The default SoundFont is TimGM6mb.sf2 (a small General MIDI bank
shipped inside the ``pretty_midi`` wheel); ``soundfont=`` takes any ``.sf2``.

symusic's built-in synthesizer was measured and rejected: with TimGM6mb its
piano plays off key (A4 comes out near 1656 Hz, see ``bench/render.py``), and
in symusic 0.6.0 ``Synthesizer.render`` cannot return its buffer to Python.

Every renderer produces the same thing: stereo float audio at ``sample_rate``
(44.1 kHz by default), exactly ``duration_s + tail_s`` long (the tail lets the
last chord ring out), peak-normalised to ``peak_dbfs`` so no sample clips.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import symusic

from moodsong.errors import MoodsongError
from moodsong.fileio import atomic_path
from moodsong.representation.pianoroll import read_score

__all__ = [
    "RENDERERS",
    "SAMPLE_RATE",
    "Audio",
    "AudioDevice",
    "available_renderers",
    "default_soundfont",
    "find_audio_device",
    "play",
    "render",
    "resolve_renderer",
    "write_audio",
]

#: Renderer names accepted by :func:`render` (``auto`` picks one of the others).
RENDERERS = ("auto", "midirenderer", "fluidsynth")
#: Output sample rate in Hz.
SAMPLE_RATE = 44100
#: Seconds of audio after the last note-off, so release and reverb ring out.
DEFAULT_TAIL_S = 1.5
#: Peak level after normalisation, in dB relative to full scale.
DEFAULT_PEAK_DBFS = -1.0

# soundfile format and subtype per file suffix.
_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
AUDIO_SUFFIXES = tuple(_FORMATS)


@dataclass
class Audio:
    """Rendered audio.

    Attributes
    ----------
    samples : numpy.ndarray
        ``float32`` array of shape ``(n_samples, 2)``, values within [-1, 1].
    sample_rate : int
        Samples per second (Hz).
    renderer : str
        Which renderer produced it.
    soundfont : pathlib.Path or None
        The SoundFont used.
    """

    samples: np.ndarray
    sample_rate: int
    renderer: str = ""
    soundfont: Path | None = None

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.sample_rate

    @property
    def peak(self) -> float:
        """Largest absolute sample value (1.0 is full scale)."""
        return float(np.abs(self.samples).max()) if self.samples.size else 0.0

    def write(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` atomically; the format follows the suffix. See :func:`write_audio`."""
        return write_audio(self, path)


# ---------------------------------------------------------------------------
# SoundFonts and renderers


def default_soundfont() -> Path:
    """The General MIDI SoundFont used when none is given.

    ``$MOODSONG_SOUNDFONT`` if set, else TimGM6mb.sf2 from the installed
    ``pretty_midi`` package (found without importing it).
    """
    env = os.environ.get("MOODSONG_SOUNDFONT")
    if env:
        return _check_soundfont(env)
    spec = importlib.util.find_spec("pretty_midi")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "TimGM6mb.sf2"
        if path.is_file():
            return path
    raise MoodsongError("no SoundFont found: install pretty_midi (it ships TimGM6mb.sf2) or pass --soundfont FILE.sf2")


def _check_soundfont(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise MoodsongError(f"{path}: no such SoundFont file")
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise MoodsongError(f"{path}: not a SoundFont 2 file (.sf2)")
    return path


@functools.lru_cache(maxsize=1)
def _fluidsynth_module():
    """The pyfluidsynth module, or the reason it cannot be used.

    Looked up once per process: without the library, pyfluidsynth's import searches for it with
    ``ctypes.util.find_library`` under several names (0.12-0.16 s each time, measured).
    """
    if not _libfluidsynth_may_exist():
        return None, "FluidSynth unavailable (no libfluidsynth found); install libfluidsynth3 and pyfluidsynth"
    try:
        import fluidsynth  # pyfluidsynth; raises ImportError when libfluidsynth is missing
    except (ImportError, OSError) as exc:
        return None, f"FluidSynth unavailable ({exc}); install libfluidsynth3 and pyfluidsynth"
    if not hasattr(fluidsynth, "Synth"):
        return None, "the installed 'fluidsynth' module is not pyfluidsynth"
    return fluidsynth, ""


def _libfluidsynth_may_exist() -> bool:
    """False only where libfluidsynth is certainly absent: Linux, and no ``libfluidsynth*`` in the dynamic
    linker's cache (``/etc/ld.so.cache``) nor in the folders ``ctypes.util.find_library`` also searches.

    Reading the cache takes ~1 ms; pyfluidsynth's own search for a missing library runs ``ldconfig``, ``gcc``
    and ``ld`` for six names (0.12-0.16 s). Elsewhere (macOS, Windows) the import decides.
    """
    import sys

    if not sys.platform.startswith("linux"):
        return True
    try:
        if b"libfluidsynth" in Path("/etc/ld.so.cache").read_bytes():
            return True
    except OSError:
        return True
    folders = [*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep),
               *os.environ.get("LIBRARY_PATH", "").split(os.pathsep),
               os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib"),
               "/lib", "/usr/lib", "/usr/local/lib", "/lib64", "/usr/lib64", "/usr/local/lib64",
               *(str(p) for p in Path("/usr/lib").glob("*-linux-gnu*")),
               *(str(p) for p in Path("/lib").glob("*-linux-gnu*"))]  # fmt: skip
    return any(next(Path(f).glob("libfluidsynth*"), None) is not None for f in folders if f and os.path.isdir(f))


@functools.lru_cache(maxsize=1)
def _midirenderer_module():
    try:
        import midirenderer
    except ImportError as exc:
        return None, f"midirenderer unavailable ({exc}); pip install midirenderer"
    return midirenderer, ""


def available_renderers() -> dict[str, str]:
    """Each concrete renderer mapped to ``""`` when usable, else the reason it is not."""
    return {"midirenderer": _midirenderer_module()[1], "fluidsynth": _fluidsynth_module()[1]}


def resolve_renderer(renderer: str = "auto") -> str:
    """The concrete renderer for a name (``auto``: FluidSynth if present, else midirenderer)."""
    if renderer not in RENDERERS:
        raise MoodsongError(f"unknown renderer {renderer!r}; choose one of {', '.join(RENDERERS)}")
    reasons = available_renderers()
    if renderer == "auto":
        for name in ("fluidsynth", "midirenderer"):
            if not reasons[name]:
                return name
        raise MoodsongError("no audio renderer available: " + "; ".join(reasons.values()))
    if reasons[renderer]:
        raise MoodsongError(reasons[renderer])
    return renderer


def render(
    score: symusic.Score | str | os.PathLike,
    *,
    renderer: str = "auto",
    soundfont: str | os.PathLike | None = None,
    sample_rate: int = SAMPLE_RATE,
    tail_s: float = DEFAULT_TAIL_S,
    peak_dbfs: float = DEFAULT_PEAK_DBFS,
) -> Audio:
    """Render a piece to stereo audio with a SoundFont.

    Each track plays its General MIDI program (drum tracks on channel 10),
    with the score's tempo map, velocities, controllers and pitch bends.

    Parameters
    ----------
    score : symusic.Score or path
        The piece (any time unit) or a MIDI file.
    renderer : {"auto", "midirenderer", "fluidsynth"}
        Which synthesizer to use.
    soundfont : path, optional
        A ``.sf2`` file; default :func:`default_soundfont`.
    sample_rate : int
        Output rate in Hz.
    tail_s : float
        Seconds kept after the last note-off.
    peak_dbfs : float
        Peak level after normalisation (dB full scale, <= 0).

    Returns
    -------
    Audio
        ``round((end_s + tail_s) * sample_rate)`` stereo samples, where
        ``end_s`` is the time of the last note-off in seconds.
    """
    score = read_score(score)
    name = resolve_renderer(renderer)
    sf_path = _check_soundfont(soundfont) if soundfont is not None else default_soundfont()
    if not 8000 <= sample_rate <= 192000:
        raise MoodsongError(f"sample rate {sample_rate} Hz is out of range 8000..192000")
    if tail_s < 0 or peak_dbfs > 0:
        raise MoodsongError("tail must be >= 0 s and peak level <= 0 dBFS")
    if sum(len(t.notes) for t in score.tracks) == 0:
        raise MoodsongError("nothing to render: the piece has no notes")
    end_s = float(score.to("second").end())
    n = int(round((end_s + tail_s) * sample_rate))
    if name == "fluidsynth":
        samples = _render_fluidsynth(score, sf_path, sample_rate, n)
    else:
        samples = _render_midirenderer(score, sf_path, sample_rate, n, end_s + tail_s)
    samples = _fit_length(samples, n)
    peak = float(np.abs(samples).max())
    if peak > 0:
        samples *= np.float32(10 ** (peak_dbfs / 20) / peak)
    return Audio(samples.astype(np.float32, copy=False), sample_rate, name, sf_path)


def _fit_length(samples: np.ndarray, n: int) -> np.ndarray:
    if samples.shape[0] >= n:
        return np.ascontiguousarray(samples[:n], dtype=np.float32)
    out = np.zeros((n, 2), np.float32)
    out[: samples.shape[0]] = samples
    return out


@functools.lru_cache(maxsize=4)
def _read_bytes(path: Path, mtime: float) -> bytes:
    return path.read_bytes()


def _render_midirenderer(score: symusic.Score, sf_path: Path, sample_rate: int, n: int, total_s: float) -> np.ndarray:
    import soundfile

    midirenderer, _ = _midirenderer_module()
    # rustysynth stops at the last MIDI event, so a marker at the end of the tail
    # keeps it rendering while the final notes release.
    score = score.copy()
    tail_tick = _seconds_to_tick(score, total_s)
    score.markers.append(symusic.TextMeta(tail_tick, "moodsong:end"))
    try:
        wav = midirenderer.render_wave_from(_read_bytes(sf_path, sf_path.stat().st_mtime), score.dumps_midi())
    except (ValueError, RuntimeError) as exc:
        raise MoodsongError(f"midirenderer could not render with {sf_path.name}: {exc}") from None
    data, native_rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    if data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    if native_rate != sample_rate:  # rustysynth renders at 48 kHz
        data = resample_poly(data, sample_rate, native_rate).astype(np.float32)
    return data[:, :2]


def _lowpass_taps(up: int, down: int) -> tuple[np.ndarray, int]:
    """scipy's ``resample_poly`` filter: ``firwin(20 * max + 1, 1 / max, window=("kaiser", 5.0)) * up``.

    A windowed sinc with its cutoff at the lower of the two Nyquist frequencies, scaled to unit gain at DC
    and multiplied by ``up`` (the zeros inserted between input samples). Returns the taps and the half length.
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    m = np.arange(-half_len, half_len + 1, dtype=np.float64)
    cutoff = 1.0 / max_rate  # relative to the Nyquist frequency
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(m.size, 5.0)
    return h * (up / h.sum()), half_len


def resample_poly(x: np.ndarray, rate_out: int, rate_in: int) -> np.ndarray:
    """Resample ``x`` (samples along axis 0, channels along axis 1) from ``rate_in`` to ``rate_out`` Hz.

    The same polyphase filter as ``scipy.signal.resample_poly(x, up, down, axis=0)`` (zero padding), in
    numpy: importing ``scipy.signal`` took 1.2-2.6 s on the 2-core machine, longer than the rest of
    writing a piece's audio. Output sample ``k`` sits at input time ``k * down / up`` and is the sum of
    the input around it weighted by the low-pass taps; grouped by phase (``k mod up``), the inputs of one
    phase form a strided view and each phase is one matrix-vector product. 35 s of stereo audio, 48 ->
    44.1 kHz: 0.05 s (scipy 0.06-0.09 s); equal to scipy's to 1e-9 on float64 input
    (``tests/test_audio_resample.py``; scipy filters float32 input in float32, so a rendered piece's
    samples differ from before by up to 2.4e-7).

    Returns float64 of shape ``(ceil(n * up / down), channels)``.
    """
    from numpy.lib.stride_tricks import as_strided

    g = gcd(rate_out, rate_in)
    up, down = rate_out // g, rate_in // g
    x = np.asarray(x, dtype=np.float64)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[:, None]
    n_in, channels = x.shape
    if up == down:
        return x.copy()[:, 0] if squeeze else x.copy()
    n_out = -(-n_in * up // down)
    h, half_len = _lowpass_taps(up, down)
    taps = -(-h.size // up)  # taps per phase
    padded = np.zeros(taps * up)
    padded[: h.size] = h
    # phases[p, q] = h[p + (taps - 1 - q) * up]: phase p's taps, oldest input first.
    phases = np.ascontiguousarray(padded.reshape(taps, up).T[:, ::-1])
    # y[k] = sum_i x[i] h[k * down + half_len - i * up]; the newest input of output k is
    # i = (k * down + half_len) // up, so x is padded with `taps` zeros in front and enough behind.
    newest = ((n_out - 1) * down + half_len) // up
    xp = np.zeros((channels, taps + max(n_in, newest + 1) + 1))
    xp[:, taps : taps + n_in] = x.T
    s_channel, s_sample = xp.strides
    y = np.empty((channels, n_out))
    with _one_blas_thread():
        for r in range(min(up, n_out)):
            count = len(range(r, n_out, up))
            t = r * down + half_len
            windows = as_strided(xp[:, t // up + 1 :], shape=(channels, count, taps),
                                 strides=(s_channel, down * s_sample, s_sample), writeable=False)  # fmt: skip
            y[:, r::up] = windows @ phases[t % up]
    return y[0] if squeeze else y.T


def _one_blas_thread():
    """numpy's BLAS limited to one thread inside the block (threadpoolctl; a no-op without it).

    The products above are small (22 taps); with OpenBLAS's threads, 35 s of audio took 0.055-0.185 s
    on the shared 2-core machine, with one thread 0.054-0.086 s (fresh processes, interleaved).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with moodsong's dependencies
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _seconds_to_tick(score: symusic.Score, seconds: float) -> int:
    """The tick at ``seconds`` under the score's tempo map (last tempo extends past the end)."""
    tpq = score.ticks_per_quarter
    tempos = sorted(((int(t.time), float(t.qpm)) for t in score.tempos), key=lambda x: x[0]) or [(0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, 120.0))
    elapsed = 0.0
    for i, (tick, qpm) in enumerate(tempos):
        sec_per_tick = 60.0 / (qpm * tpq)
        next_tick = tempos[i + 1][0] if i + 1 < len(tempos) else None
        if next_tick is None or elapsed + (next_tick - tick) * sec_per_tick >= seconds:
            return int(np.ceil(tick + (seconds - elapsed) / sec_per_tick))
        elapsed += (next_tick - tick) * sec_per_tick
    return 0  # unreachable


def _channels(score: symusic.Score) -> list[int]:
    """MIDI channel per track: drums on channel 9, others in order, skipping 9 (as symusic writes them)."""
    melodic = [c for c in range(16) if c != 9]
    out, k = [], 0
    for track in score.tracks:
        if track.is_drum:
            out.append(9)
        else:
            out.append(melodic[k % len(melodic)])
            k += 1
    return out


def _render_fluidsynth(score: symusic.Score, sf_path: Path, sample_rate: int, n: int) -> np.ndarray:
    fluidsynth, _ = _fluidsynth_module()
    write_float = fluidsynth.cfunc(
        "fluid_synth_write_float", ctypes.c_int,
        ("synth", ctypes.c_void_p, 1), ("len", ctypes.c_int, 1),
        ("lout", ctypes.c_void_p, 1), ("loff", ctypes.c_int, 1), ("lincr", ctypes.c_int, 1),
        ("rout", ctypes.c_void_p, 1), ("roff", ctypes.c_int, 1), ("rincr", ctypes.c_int, 1),
    )  # fmt: skip
    sec = score.to("second")
    channels = _channels(score)
    # Events as (sample, order, kind, channel, a, b); offs sort before ons at one instant.
    events: list[tuple] = []
    for track, ch in zip(sec.tracks, channels):
        for c in track.controls:
            events.append((int(round(c.time * sample_rate)), 1, "cc", ch, int(c.number), int(c.value)))
        for p in track.pitch_bends:
            events.append((int(round(p.time * sample_rate)), 1, "bend", ch, int(p.value), 0))
        if len(track.notes):
            a = track.notes.numpy()
            on = np.round(a["time"] * sample_rate).astype(np.int64)
            off = np.round((a["time"] + a["duration"]) * sample_rate).astype(np.int64)
            for s, e, p, v in zip(on.tolist(), off.tolist(), a["pitch"].tolist(), a["velocity"].tolist()):
                events.append((e, 0, "off", ch, p, 0))
                events.append((s, 2, "on", ch, p, max(1, min(127, v))))
    events.sort(key=lambda e: (e[0], e[1]))

    # Chorus off and one voice thread per core: ~2x faster, and a piano needs no chorus.
    settings = {"synth.polyphony": 512, "synth.chorus.active": 0,
                "synth.cpu-cores": max(1, min(4, os.cpu_count() or 1))}
    synth = fluidsynth.Synth(gain=0.2, samplerate=float(sample_rate), **settings)
    try:
        sfid = synth.sfload(str(sf_path))
        if sfid < 0:
            raise MoodsongError(f"{sf_path}: FluidSynth could not load this SoundFont")
        for track, ch in zip(score.tracks, channels):
            synth.program_select(ch, sfid, 128 if track.is_drum else 0, int(track.program))
        out = np.zeros((n, 2), np.float32)
        base = out.ctypes.data
        pos = 0

        def advance(to: int) -> None:
            nonlocal pos
            to = min(to, n)
            if to > pos:
                write_float(synth.synth, to - pos, base, 2 * pos, 2, base, 2 * pos + 1, 2)
                pos = to

        for sample, _, kind, ch, a, b in events:
            advance(sample)
            if kind == "on":
                synth.noteon(ch, a, b)
            elif kind == "off":
                synth.noteoff(ch, a)
            elif kind == "cc":
                synth.cc(ch, a, b)
            else:
                synth.pitch_bend(ch, a)  # symusic and pyfluidsynth both centre bends at 0
        advance(n)
        return out
    finally:
        synth.delete()


def write_audio(audio: Audio, path: str | os.PathLike) -> Path:
    """Write audio atomically; ``.wav``/``.flac`` as 16-bit PCM, ``.ogg`` as Vorbis, ``.mp3`` as MPEG layer III."""
    import soundfile

    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MoodsongError(f"{path}: unknown audio format; use one of {', '.join(AUDIO_SUFFIXES)}")
    data = np.clip(audio.samples, -1.0, 1.0)
    with atomic_path(path) as tmp:
        try:
            # Written in blocks: libsndfile 1.2's Vorbis encoder crashes on one very large write.
            with soundfile.SoundFile(str(tmp), "w", audio.sample_rate, data.shape[1], subtype=fmt[1],
                                     format=fmt[0]) as f:
                for i in range(0, data.shape[0], 1 << 16):
                    f.write(data[i : i + (1 << 16)])
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            raise MoodsongError(f"{path}: cannot write {fmt[0]} ({exc})") from None
    return path


# ---------------------------------------------------------------------------
# Playback


@dataclass
class AudioDevice:
    """A way to play a sound file: a Python audio library or a command-line player."""

    name: str
    command: list[str] | None = None  # argv prefix; the file path is appended

    def play(self, path: str | os.PathLike) -> None:
        """Play a sound file to the end (blocks)."""
        if self.command is None:  # sounddevice
            import sounddevice
            import soundfile

            data, rate = soundfile.read(str(path), dtype="float32")
            sounddevice.play(data, rate)
            sounddevice.wait()
            return
        proc = subprocess.run([*self.command, str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise MoodsongError(f"{self.name} could not play {path}: {last}")


def _sound_server() -> bool:
    """True when a PulseAudio or PipeWire server is reachable (desktop Linux)."""
    if os.environ.get("PULSE_SERVER"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return bool(runtime) and any(Path(runtime, p).exists() for p in ("pulse/native", "pipewire-0"))


def _alsa_cards() -> bool:
    cards = Path("/proc/asound/cards")
    try:
        return Path("/dev/snd").is_dir() and "no soundcards" not in cards.read_text()
    except OSError:
        return False


def find_audio_device() -> AudioDevice | None:
    """The first way to reach speakers here, or None when the machine has no audio output.

    Tries the ``sounddevice`` library (if installed and it lists an output
    device), then ``afplay`` (macOS), ``pw-play``/``paplay`` (a running sound
    server), ``aplay`` and ``ffplay`` (an ALSA sound card).
    """
    try:
        import sounddevice

        if any(d.get("max_output_channels", 0) > 0 for d in sounddevice.query_devices()):
            return AudioDevice("sounddevice")
    except Exception:  # not installed, no PortAudio library, or no devices
        pass
    server, cards = _sound_server(), _alsa_cards()
    candidates = [
        ("afplay", ["afplay"], True),
        ("pw-play", ["pw-play"], server),
        ("paplay", ["paplay"], server),
        ("aplay", ["aplay", "-q"], cards),
        ("ffplay", ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error"], server or cards),
    ]
    for name, argv, usable in candidates:
        if usable and shutil.which(argv[0]):
            return AudioDevice(name, argv)
    return None


def play(
    source: str | os.PathLike | symusic.Score,
    *,
    device: AudioDevice | None = None,
    **render_kwargs,
) -> AudioDevice:
    """Play a MIDI file, a score or a sound file through the speakers.

    MIDI is rendered first (keyword arguments go to :func:`render`).

    Raises
    ------
    MoodsongError
        When no audio output device exists on this machine.
    """
    device = device or find_audio_device()
    if device is None:
        raise MoodsongError(
            "no audio output device found on this machine (no sound card, sound server or player); "
            "render to a file instead: moodsong render song.mid song.wav"
        )
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in AUDIO_SUFFIXES:
        if not Path(source).is_file():
            raise MoodsongError(f"{source}: no such file")
        device.play(source)
        return device
    audio = render(source, **render_kwargs)
    with tempfile.TemporaryDirectory(prefix="moodsong-play-") as tmp:
        path = write_audio(audio, Path(tmp) / "piece.wav")
        device.play(path)
    return device
