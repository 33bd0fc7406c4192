"""``moodsong emotion`` (what a prompt means) and ``moodsong train-emotion-text``."""

from __future__ import annotations

import json

import click

from moodsong.cli.group import main
from moodsong.errors import MoodsongError


@main.command()
@click.argument("text", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (valence, arousal, quadrant, label, keywords, ...).")
@click.option("--voice", type=click.Path(dir_okay=False),
              help="Read the request from a WAV file (speech) instead of TEXT.")
@click.option("--backend", type=click.Choice(["auto", "pocketsphinx", "whisper"]), default="auto", show_default=True,
              help="Speech recognizer for --voice; 'auto' is whisper when moodsong[voice] is installed (English and "
                   "Chinese), else pocketsphinx (English).")
@click.option("--whisper-model", type=click.Path(file_okay=False),
              help="Folder of another local faster-whisper model (or set $MOODSONG_WHISPER_MODEL); default: the "
                   "bundled one. Never downloaded.")
@click.option("--no-model", is_flag=True, help="Lexicons only: skip the MiniLM sentence model (faster, less coverage).")
def emotion(text, as_json, voice, backend, whisper_model, no_model):
    """Show what moodsong understands from a feeling: valence, arousal, quadrant, keywords.

    TEXT is an English or Chinese prompt. Valence and arousal are in [-1, 1];
    quadrants follow Russell: Q1 happy/excited, Q2 tense/angry, Q3 sad/depressed,
    Q4 calm/relaxed.

    \b
    Examples:
      moodsong emotion "I want a song that expresses hope and wonder"
      moodsong emotion "not sad, just very calm" --json
      moodsong emotion "一首悲伤缓慢的歌"
      moodsong emotion "a haunted lighthouse in a storm"   # images, read as a scene
      moodsong emotion "海边的日出"
      moodsong emotion --voice request.wav
      moodsong emotion --voice request.wav --backend pocketsphinx
    """
    from moodsong.emotion.text import analyze_text

    transcript = None
    if voice:
        if text:
            raise MoodsongError("give either TEXT or --voice, not both")
        from moodsong.emotion.voice import transcribe

        transcript = transcribe(voice, backend=backend, model_path=whisper_model)
        analysis = transcript.analyze(voice, use_model=not no_model)
    elif not text:
        raise MoodsongError('give a prompt, e.g. moodsong emotion "a calm, hopeful song" (or --voice file.wav)')
    else:
        analysis = analyze_text(text, use_model=not no_model)
    if as_json:
        out = analysis.to_dict()
        if transcript is not None:
            out["transcript"] = transcript.to_dict()
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    if transcript is not None:
        click.echo(transcript.explain())
    click.echo(analysis.explain())


@main.command("train-emotion-text")
@click.option("--emobank", "emobank", required=True, type=click.Path(exists=True, dir_okay=False),
              help="EmoBank corpus CSV (columns id, split, V, A, D, text).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the model (.safetensors, plus a .json report beside it). Default: the shipped one.")
@click.option("--cache", type=click.Path(dir_okay=False), default=None,
              help="Cache (.npz) of the frozen MiniLM layers' output, reused between runs (~0.7 GB for EmoBank).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--top-layers", "top", type=click.IntRange(0, 6), default=None,
              help="How many of MiniLM's 6 transformer layers (from the top) are fully fine-tuned "
                   "[default: moodsong.emotion.train_text.TOP_LAYERS].")
@click.option("--lora-rank", "rank", type=click.IntRange(0, 128), default=None,
              help="Rank of the trained low-rank updates of the layers below those; 0 keeps them frozen "
                   "[default: moodsong.emotion.train_text.LORA_RANK].")
@click.option("--epochs", type=click.IntRange(1, 50), default=None,
              help="Training epochs; the best dev checkpoint is kept [default: moodsong.emotion.train_text.EPOCHS].")
@click.option("--aux-dominance", "aux", type=click.FloatRange(0, None), default=None,
              help="Loss weight of EmoBank's dominance rating, an auxiliary target (the head still outputs "
                   "valence and arousal) [default: moodsong.emotion.train_text.AUX_DOMINANCE].")
# The choices are moodsong.emotion.encoder.POOLINGS, spelled out: importing it here would load numpy for every command.
@click.option("--pooling", type=click.Choice(["mean", "mean+max", "mean+cls"]), default=None,
              help="Sentence vector the head reads: mean over tokens, or that and the max over tokens or the "
                   "[CLS] state [default: moodsong.emotion.train_text.POOLING].")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True, help="torch CPU threads.")
def train_emotion_text(emobank, out, cache, seed, top, rank, epochs, aux, pooling, threads):
    """Fine-tune MiniLM's top layers and a head on EmoBank (train split; checkpoint chosen on dev; r on test).

    \b
    Examples:
      moodsong train-emotion-text --emobank ../shared/data/emobank/emobank.csv
      moodsong train-emotion-text --emobank emobank.csv --out runs/head.safetensors --cache /tmp/emobank_states.npz
    """
    from moodsong.emotion import train_text

    report = train_text.train_head(
        emobank, out=out, cache=cache, seed=seed, threads=threads,
        top=train_text.TOP_LAYERS if top is None else top, rank=train_text.LORA_RANK if rank is None else rank,
        epochs=epochs or train_text.EPOCHS,
        aux_dominance=train_text.AUX_DOMINANCE if aux is None else aux, pooling=pooling or train_text.POOLING)
    click.echo(json.dumps(report, indent=2))
