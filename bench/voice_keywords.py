"""Keyword recall on spoken prompts: moodsong's task-tuned pocketsphinx vs plain pocketsphinx.

Each prompt is spoken by Debian's espeak-ng in several voices (deterministic
synthesis), written to WAV at 22.05 kHz, and recognized twice on the same audio:

* moodsong: ``moodsong.emotion.voice.transcribe`` (task language model over
  request + emotion vocabulary, combined with the generic model);
* peer: pocketsphinx's generic English model alone (its default decoder).

Keyword recall = feeling words of the prompt (moodsong's lexicon) found in the
transcript / all feeling words spoken. Quadrant accuracy = transcript analysed
by ``analyze_text`` lands in the same Russell quadrant as the typed prompt.

    python bench/voice_keywords.py            # 20 prompts x 3 voices
    python bench/voice_keywords.py --voices en-us+m3:130
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from moodsong.emotion.text import _lexicon, analyze_text
from moodsong.emotion.voice import SAMPLE_RATE, _Sphinx, load_audio, transcribe

PROMPTS = [
    "I want a song that expresses hope and wonder",
    "play something sad and slow",
    "make me an angry tense song",
    "a calm peaceful piece please",
    "I feel happy and excited",
    "a very lonely melancholic melody",
    "give me relaxing gentle music",
    "a song full of fear and anger",
    "something joyful and energetic",
    "I am tired and depressed",
    "a song that is not sad",
    "play a cheerful upbeat tune",
    "I want something dark and aggressive",
    "a quiet dreamy song for sleep",
    "I feel anxious and nervous",
    "a triumphant and exciting piece",
    "make me a soft tender love song",
    "a gloomy song about grief",
    "something serene and soothing",
    "a fast lively dance",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", default="en-us+m3:130,en+f3:140,en-us:150",
                    help="comma-separated espeak-ng voice:speed pairs")
    args = ap.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    lex = _lexicon("en")["words"]
    sph = _Sphinx.get()
    stats = {"moodsong": [0, 0, 0, 0.0], "pocketsphinx": [0, 0, 0, 0.0]}  # hits, quadrant ok, insertions, s
    total_kw = n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.voices.split(","):
            voice, speed = spec.split(":")
            for i, prompt in enumerate(PROMPTS):
                wav = Path(tmp) / f"{voice}_{i}.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(wav), prompt], check=True)
                spoken = [w for w in prompt.lower().split() if w in lex]
                want_q = analyze_text(prompt, use_model=False).quadrant
                total_kw += len(spoken)
                n += 1
                t = time.perf_counter()
                ours = transcribe(wav, backend="pocketsphinx").text
                t_ours = time.perf_counter() - t
                samples, _, _ = load_audio(wav)
                t = time.perf_counter()
                peer = sph._decode(sph.free, (samples * 32767).astype("<i2").tobytes())
                t_peer = time.perf_counter() - t
                for name, text, secs in (("moodsong", ours, t_ours), ("pocketsphinx", peer, t_peer)):
                    words = text.split()
                    s = stats[name]
                    s[0] += sum(w in words for w in spoken)
                    s[2] += sum(1 for w in words if w in lex and w not in spoken)
                    try:
                        s[1] += analyze_text(text, use_model=False).quadrant == want_q
                    except Exception:  # empty or unreadable transcript
                        pass
                    s[3] += secs
                print(f"[{voice}] {prompt!r}\n    moodsong: {ours!r}\n    generic:  {peer!r}", flush=True)
    print(f"\n{n} spoken prompts, {total_kw} feeling words, audio at {SAMPLE_RATE} Hz after resampling")
    for name, (hits, qok, ins, secs) in stats.items():
        print(f"{name:13s} keyword recall {hits / total_kw:.2f}  quadrant accuracy {qok / n:.2f}  "
              f"spurious feeling words {ins}  decode {secs:.1f} s")
    ours, peer = stats["moodsong"][0], stats["pocketsphinx"][0]
    print(f"recall ratio moodsong / plain pocketsphinx: {ours / max(peer, 1):.1f}x")


if __name__ == "__main__":
    main()
