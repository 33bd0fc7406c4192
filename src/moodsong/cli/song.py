"""``moodsong train-song``: train the song model (chord plan, melody network, accompaniment patterns)."""

from __future__ import annotations

import click

from moodsong.cli.group import main


@main.command("train-song")
@click.argument("source", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for model.json/.safetensors and the optimiser state.")
@click.option("--epochs", default=None, type=int,
              help="Upper bound on epochs (default 40); early stopping may end sooner.")
@click.option("--lr", default=None, type=float, help="AdamW learning rate (default 2e-3).")
@click.option("--batch-size", default=None, type=int, help="8-bar crops per update (default 32).")
@click.option("--hidden", default=None, type=int, help="GRU units per layer (default 192).")
@click.option("--patience", default=None, type=int,
              help="Epochs without a better validation loss before stopping (default 6).")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--resume", is_flag=True, help="Continue the run saved in --out.")
@click.option("--force", is_flag=True, help="Start over even if --out holds a model.")
def train_song(source, out, epochs, lr, batch_size, hidden, patience, seed, device, threads, resume, force):
    """Train the song model on SOURCE: a POP909-style folder (NNN/NNN.mid with chord, beat and key
    annotations; songs NNN % 10 == 0 are held out and never read) or any folder of 4/4 MIDI files
    with a melody track (chords and key are then recognised).

    \b
    Examples:
      moodsong train-song ~/data/pop909 --out runs/song
      moodsong train-song ~/midi/leadsheets --out runs/my-song --epochs 10
      moodsong train-song ~/data/pop909 --out runs/song --resume
      torchrun --nproc-per-node 2 --no-python moodsong train-song ~/data/pop909 --out runs/song-ddp
      moodsong compose "a hopeful morning" --model runs/song/model.json --out songs/
    """
    from dataclasses import replace
    from pathlib import Path

    from moodsong.errors import MoodsongError

    if threads:
        import torch

        torch.set_num_threads(threads)
    from moodsong.corpora.songs import load_songs
    from moodsong.training.song import SongTrainConfig, train_song_model

    if (Path(out) / "model.json").exists() and not (resume or force):
        raise MoodsongError(f"{out} already holds a model; use --resume to continue or --force to start over")
    cfg = SongTrainConfig(seed=seed)
    given = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "patience": patience}
    changes = {k: v for k, v in given.items() if v is not None}
    cfg = replace(cfg, **changes)
    if hidden is not None:
        cfg.melody = replace(cfg.melody, hidden=hidden)
    train, valid, skipped = load_songs(source)
    click.echo(f"{len(train)} training songs, {len(valid)} validation songs, {len(skipped)} skipped")
    stem, _ = train_song_model(train, valid, out, cfg, resume=resume, device=device, log=click.echo)
    click.echo(f"model: {stem}.json")
