"""``moodsong train-seq``: train the temporal models (RNN-RBM, WaveNet-NADE)."""

from __future__ import annotations

import click

from moodsong.cli.defaults import defaults
from moodsong.cli.group import main

# The library's defaults (docs/models.md's measured runs), shown by --help: they cannot disagree.
TC = defaults("training.sequence", "TemporalTrainConfig")
WN = defaults("models.wavenet", "WaveNetConfig")
RR = defaults("models.rnnrbm", "RNNRBMConfig")
STACKS = 2  # --dilations is one stack, repeated --stacks times: the library's default is two stacks of 1..32


@main.command("train-seq")
@click.argument("source")
@click.option("--model", "model_type", type=click.Choice(["wavenet", "rnnrbm"]), default="wavenet", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder: best model as model.json/.safetensors, latest as last.*.")
@click.option("--epochs", default=TC["epochs"], show_default=True,
              help="Upper bound; early stopping usually ends sooner.")
@click.option("--lr", default=TC["lr"], show_default=True, help="Adam learning rate.")
@click.option("--batch-size", default=TC["batch_size"], show_default=True, help="Pieces per update.")
@click.option("--max-len", default=TC["max_len"], show_default=True, help="Random crop of each piece, in steps.")
@click.option("--transpose", default=TC["transpose"], show_default=True,
              help="Random transposition of training pieces by up to N semitones.")
@click.option("--patience", default=TC["patience"], show_default=True,
              help="Epochs without a better validation NLL before stopping.")
@click.option("--max-minutes", default=TC["max_minutes"], show_default=True,
              help="Stop after this many minutes of training (0 = no limit).")
@click.option("--hidden", default=None, type=int,
              help=f"NADE hidden units (wavenet, default {WN['nade_hidden']}) "
                   f"or RBM hidden units (rnnrbm, default {RR['num_hidden']}).")
@click.option("--channels", default=WN["channels"], show_default=True, help="wavenet: residual channels.")
@click.option("--dilations", default=",".join(map(str, WN["dilations"][: len(WN["dilations"]) // STACKS])),
              show_default=True, help="wavenet: dilations of one stack.")
@click.option("--stacks", default=STACKS, show_default=True, help="wavenet: repetitions of the dilation stack.")
@click.option("--dropout", default=WN["dropout"], show_default=True, help="wavenet: dropout in the gated blocks.")
@click.option("--recurrent", default=RR["num_recurrent"], show_default=True, help="rnnrbm: recurrent units.")
@click.option("--cell", type=click.Choice(["gru", "lstm", "rnn"]), default=RR["cell"], show_default=True,
              help="rnnrbm: recurrent cell.")
@click.option("--cd-k", default=RR["cd_k"], show_default=True, help="rnnrbm: Gibbs steps per negative sample.")
@click.option("--pretrain-epochs", default=TC["pretrain_epochs"], show_default=True,
              help="rnnrbm: plain-RBM pretraining epochs (0 = off).")
@click.option("--cond-dim", default=WN["cond_dim"], show_default=True,
              help="Size of a conditioning (emotion) vector the model accepts.")
@click.option("--representation", type=click.Choice(["keys", "note-state"]), default=None,
              help="Frames as sounding keys (benchmark default) or [held|struck] note-state (MIDI default).")
@click.option("--lowest-pitch", type=int, default=None,
              help="Lowest MIDI pitch (default 21 for keys, 24 for note-state).")
@click.option("--num-pitches", type=int, default=None, help="Pitch columns (default 88 for keys, 78 for note-state).")
@click.option("--steps-per-quarter", type=int, default=None,
              help="Steps per quarter note (default 1 for benchmark files, 4 otherwise).")
@click.option("--val-fraction", default=0.1, show_default=True,
              help="MIDI sources: share of pieces held out for validation.")
@click.option("--seed", default=TC["seed"], show_default=True)
@click.option("--device", default=TC["device"], show_default=True, help="cpu, cuda or auto.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (1 is fastest on a busy machine).")
@click.option("--resume", is_flag=True, help="Continue the run saved in --out.")
@click.option("--init", "init", default=None, metavar="MODEL",
              help="Start a new run from this model's weights (a shipped name such as musedata-wavenet, or a "
                   "checkpoint path); its architecture and frame layout replace those options.")
@click.option("--force", is_flag=True, help="Start over even if --out holds a model.")
def train_seq(source, model_type, out, epochs, lr, batch_size, max_len, transpose, patience, max_minutes, hidden,
              channels, dilations, stacks, dropout, recurrent, cell, cd_k, pretrain_epochs, cond_dim, representation,
              lowest_pitch, num_pitches, steps_per_quarter, val_fraction, seed, device, threads, resume, init, force):
    """Train a whole-piece model: WaveNet-NADE (default) or RNN-RBM.

    SOURCE is a polyphonic-benchmark pickle/JSON (its train and valid splits
    are used), a folder of MIDI files, one MIDI file, or a built-in corpus
    (bach, nottingham, ...; held-out pieces give the validation split).
    Validation NLL is printed every epoch; the best epoch is kept.

    \b
    Examples:
      moodsong train-seq jsb_chorales.pkl --out runs/jsb-wavenet
      moodsong train-seq jsb_chorales.pkl --model rnnrbm --out runs/jsb-rnnrbm --threads 1
      moodsong train-seq ~/midi/pop --out runs/pop-wavenet --max-len 256 --max-minutes 30
      moodsong train-seq jsb_chorales.pkl --out runs/jsb-wavenet --resume
      moodsong train-seq musedata_trainvalid.pkl --out runs/musedata --init musedata-wavenet --lr 0.0005
      torchrun --nproc-per-node 2 --no-python moodsong train-seq jsb_chorales.pkl --out runs/jsb-ddp  # data-parallel
    """
    import numpy as np
    import torch

    from moodsong.corpora.corpus import list_inputs
    from moodsong.errors import MoodsongError
    from moodsong.training.sequence import TemporalTrainConfig, load_frames, train_sequence_model

    if threads:
        torch.set_num_threads(threads)
    from moodsong.training import distributed as dist

    init_model = None
    if init is not None:
        if resume:
            raise MoodsongError("--init starts a new run from a model and --resume continues the run in --out: "
                                "use one of them")
        from moodsong.models.generate import load_model

        init_model, init_meta = load_model(init)
        model_type = init_meta["model_type"]
        if model_type not in ("wavenet", "rnnrbm"):
            raise MoodsongError(f"{init} is a {model_type} model; train-seq continues wavenet and rnnrbm models")
        from moodsong.evaluation.likelihood import model_representation

        init_rep = model_representation(init_model)
        representation, lowest_pitch, num_pitches, steps_per_quarter = (
            init_rep["kind"], init_rep["lowest_pitch"], init_rep["num_pitches"], init_rep.get("steps_per_quarter"))
    job = dist.init_from_env(device)  # data-parallel when launched by torchrun (docs/scale.md)
    base = source.rsplit(":", 1)[0] if source.endswith((":train", ":valid", ":test")) else source
    _, files, kind = list_inputs(base)
    benchmark = kind == "polyphonic"
    rep_kind = representation or ("keys" if benchmark else "note-state")
    rep = {"kind": rep_kind,
           "lowest_pitch": lowest_pitch if lowest_pitch is not None else (21 if rep_kind == "keys" else 24),
           "num_pitches": num_pitches if num_pitches is not None else (88 if rep_kind == "keys" else 78),
           "steps_per_quarter": steps_per_quarter if steps_per_quarter is not None else (1 if benchmark else 4)}
    if rep["lowest_pitch"] < 0 or rep["num_pitches"] < 1 or rep["lowest_pitch"] + rep["num_pitches"] > 128:
        raise MoodsongError("--lowest-pitch/--num-pitches must stay within MIDI 0..127")
    if benchmark:
        train, valid = load_frames(base, rep, "train"), load_frames(base, rep, "valid")
    else:
        pieces = load_frames(source, rep)
        order = np.random.default_rng(seed).permutation(len(pieces))
        n_val = int(round(len(pieces) * val_fraction)) if len(pieces) >= 5 else 0
        valid = [pieces[i] for i in order[:n_val]]
        train = [pieces[i] for i in order[n_val:]]
    mc = {"cond_dim": cond_dim, "representation": rep}
    if model_type == "wavenet":
        try:
            d = [int(x) for x in dilations.split(",")] * stacks
        except ValueError:
            raise MoodsongError(f"--dilations must be comma-separated integers, not {dilations!r}") from None
        mc.update(channels=channels, skip_channels=2 * channels, dilations=d, nade_hidden=hidden or WN["nade_hidden"],
                  dropout=dropout)
    else:
        mc.update(num_hidden=hidden or RR["num_hidden"], num_recurrent=recurrent, cell=cell, cd_k=cd_k)
    tc = TemporalTrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, max_len=max_len, transpose=transpose,
                             patience=patience, max_minutes=max_minutes, seed=seed, device=device,
                             pretrain_epochs=pretrain_epochs if model_type == "rnnrbm" else 0)
    if init_model is not None:
        mc = dict(init_meta["model_config"])
    model, history = train_sequence_model(model_type, train, valid, out, mc, tc, source=str(source), resume=resume,
                                          overwrite=force, log=click.echo, progress=job.is_main,
                                          init_model=init_model)
    dist.shutdown()
    if not job.is_main:
        return
    best = min((h["val_nll"] for h in history if h.get("val_nll") == h.get("val_nll")), default=None)
    click.echo(f"saved {out}/model.json"
               + (f"  (best validation NLL {best:.4f} nats/step)" if best is not None else ""))
