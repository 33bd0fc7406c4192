"""Chinese segmentation from the grouped prefix-dictionary cache equals jieba's whole dictionary."""

from __future__ import annotations

import random

import pytest

jieba = pytest.importorskip("jieba")

from moodsong.emotion import text as T  # noqa: E402


def _full_tokenizer():
    tok = jieba.Tokenizer()
    tok.initialize()
    for w in T._lexicon("zh")["words"]:
        tok.add_word(w)
    return tok


def _texts(n: int, seed: int = 0) -> list[str]:
    words = sorted(T._lexicon("zh")["words"])
    extra = ["我想要", "一首", "能够", "表达", "的歌", "今天", "晚上", "非常", "有点", "不是", "，", "。",
             "音乐", "天空", "安静", "的", "了", "和", "奇迹", "希望", "慢", "快乐地", "心情", "下雨", "朋友",
             "abc", "123"]
    rng = random.Random(seed)
    return ["".join(rng.choice(words + extra) for _ in range(rng.randint(1, 8))) for _ in range(n)]


@pytest.fixture
def fresh_jieba(monkeypatch, tmp_path):
    monkeypatch.setenv("MOODSONG_CACHE", str(tmp_path))
    T._jieba.cache_clear()
    yield tmp_path
    T._jieba.cache_clear()


def test_grouped_cache_segments_like_the_whole_dictionary(fresh_jieba):
    first = T._jieba()  # no grouped cache yet: the whole dictionary, and the cache is written
    assert not isinstance(first.FREQ, T._LazyFreq)
    assert list((fresh_jieba / "jieba").glob("prefix-dict-*.marshal"))
    T._jieba.cache_clear()
    lazy = T._jieba()
    assert isinstance(lazy.FREQ, T._LazyFreq)
    full = _full_tokenizer()
    assert lazy.total == full.total
    prompts = ["我想要一首能够表达希望和奇迹的歌", "一首悲伤缓慢的歌", "我一点也不难过", "有点累但是很平静",
               *_texts(300)]
    for p in prompts:
        assert lazy.lcut(p) == full.lcut(p), p
        assert lazy.lcut(p, HMM=False) == full.lcut(p, HMM=False), p
    for w in list(full.FREQ)[::997]:
        assert lazy.FREQ.get(w) == full.FREQ[w]


def test_damaged_cache_falls_back_to_the_whole_dictionary(fresh_jieba):
    T._jieba()
    (path,) = (fresh_jieba / "jieba").glob("prefix-dict-*.marshal")
    path.write_bytes(b"not marshal data")
    T._jieba.cache_clear()
    tok = T._jieba()
    assert not isinstance(tok.FREQ, T._LazyFreq)
    assert tok.lcut("一首悲伤缓慢的歌") == _full_tokenizer().lcut("一首悲伤缓慢的歌")
    T._jieba.cache_clear()
    assert isinstance(T._jieba().FREQ, T._LazyFreq)  # rewritten


def test_chinese_analysis_unchanged_with_the_cache(fresh_jieba):
    before = T.analyze_text("我想要一首能够表达希望和奇迹的歌", use_model=False).to_dict()
    T._jieba.cache_clear()
    after = T.analyze_text("我想要一首能够表达希望和奇迹的歌", use_model=False).to_dict()
    assert before == after and after["quadrant"] == 1
