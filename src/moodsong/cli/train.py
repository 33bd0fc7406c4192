"""``moodsong train``."""

from __future__ import annotations

import click

from moodsong.cli.data import config_from_options, representation_options
from moodsong.cli.defaults import defaults
from moodsong.cli.group import main
from moodsong.errors import MoodsongError

TC = defaults("training.rbm", "TrainConfig")  # the library's defaults (the demo's), shown by --help
MC = defaults("models.rbm", "RBMConfig")


@main.command()
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for the checkpoint (model.json + model.safetensors).")
@click.option("--epochs", default=TC["epochs"], show_default=True)
@click.option("--lr", default=TC["lr"], show_default=True, help="Learning rate.")
@click.option("--batch-size", default=TC["batch_size"], show_default=True)
@click.option("--hidden", "num_hidden", default=MC["num_hidden"], show_default=True, help="Hidden units of the RBM.")
@click.option("--timesteps", "num_timesteps", default=MC["num_timesteps"], show_default=True,
              help="Steps per window (visible layer).")
@click.option("--cd-k", default=TC["cd_k"], show_default=True, help="Gibbs steps per contrastive-divergence update.")
@click.option("--persistent", is_flag=True, help="Persistent contrastive divergence (chains carry over).")
@click.option("--order", type=click.Choice(["shuffled", "per-song"]), default=TC["order"], show_default=True,
              help="Batches drawn across the corpus, or the demo's one-song-at-a-time loop.")
@click.option("--val-fraction", default=TC["validation_fraction"], show_default=True,
              help="Share of pieces held out for validation metrics.")
@click.option("--checkpoint-every", default=TC["checkpoint_every"], show_default=True,
              help="Epochs between checkpoints.")
@click.option("--seed", default=TC["seed"], show_default=True)
@click.option("--device", default=TC["device"], show_default=True, help="cpu, cuda, cuda:1 or auto.")
@click.option("--backend", type=click.Choice(["auto", "sparse", "torch"]), default=TC["backend"], show_default=True,
              help="rbm: the fused sparse CD kernel (CPU, one process, data in memory), the torch loop, or auto "
                   "(sparse wherever it can run).")
@click.option("--resume", is_flag=True, help="Continue the run saved in --out.")
@click.option("--force", is_flag=True, help="Start over even if --out holds a model.")
@click.option("--distributed", is_flag=True,
              help="Require a torchrun launch (data-parallel; detected automatically under torchrun).")
@representation_options
@click.option("--model", "model_type", type=click.Choice(["rbm", "wavenet", "rnnrbm"]), default="rbm",
              show_default=True,
              help="rbm (windows), or a whole-piece model (see `moodsong train-seq --help` for its own options).")
@click.pass_context
def train(ctx, source, out, epochs, lr, batch_size, num_hidden, num_timesteps, cd_k, persistent, order, val_fraction,
          checkpoint_every, seed, device, backend, resume, force, distributed, lowest_pitch, num_pitches,
          steps_per_quarter, drums, model_type):
    """Train an RBM on a corpus (see `moodsong prepare --help` for SOURCE).

    Metrics per epoch (pseudo-log-likelihood, free energy and reconstruction
    error of held-out pieces) are stored in the checkpoint's JSON.

    \b
    Examples:
      moodsong train bach --out runs/bach
      moodsong train ~/midi/pop --out runs/pop --epochs 50 --hidden 200 --cd-k 5
      moodsong train ~/midi/pop --out runs/pop --resume     # after an interruption
      moodsong train jsb_chorales.pkl --model wavenet --out runs/jsb-wavenet   # whole pieces (WaveNet-NADE)
      moodsong prepare ~/lakh --sharded --out ~/lakh-shards && moodsong train ~/lakh-shards --out runs/lakh
      torchrun --nproc-per-node 4 --no-python moodsong train bach --out runs/bach --batch-size 400

    Under torchrun, --batch-size is the global batch, split over the processes;
    the result matches a single-process run at that batch (see docs/scale.md).
    """
    if model_type != "rbm":  # whole-piece models train through `moodsong train-seq`; pass on what the user set
        from moodsong.cli.train_temporal import train_seq

        given = {k: v for k, v in ctx.params.items()
                 if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
        kw = {({"num_hidden": "hidden"}).get(k, k): v for k, v in given.items()
              if k in ("epochs", "lr", "batch_size", "num_hidden", "cd_k", "lowest_pitch", "num_pitches",
                       "steps_per_quarter")}
        return ctx.invoke(train_seq, source=source, model_type=model_type, out=out, seed=seed, device=device,
                          resume=resume, force=force, val_fraction=val_fraction, **kw)
    from moodsong.corpora.corpus import load_corpus
    from moodsong.models.rbm import RBMConfig
    from moodsong.training import distributed as dist
    from moodsong.training.rbm import TrainConfig, train_rbm

    if distributed and not dist.launched_by_torchrun():
        raise MoodsongError("--distributed needs a torchrun launch, "
                            "e.g. torchrun --nproc-per-node 2 --no-python moodsong train ...")
    job = dist.init_from_env(device)
    echo = job.log(click.echo)
    config = config_from_options(lowest_pitch, num_pitches, steps_per_quarter, drums)
    if job.distributed and job.local_rank != 0:
        job.barrier()  # one process per machine prepares the cache; the others then read it
    corpus = load_corpus(source, config, progress=job.is_main)
    if job.distributed and job.local_rank == 0:
        job.barrier()
    echo(corpus.summary())
    tc = TrainConfig(lr=lr, batch_size=batch_size, epochs=epochs, cd_k=cd_k, persistent=persistent, order=order,
                     validation_fraction=val_fraction, seed=seed, device=device, checkpoint_every=checkpoint_every,
                     backend=backend)
    mc = RBMConfig(num_timesteps=num_timesteps, num_hidden=num_hidden, pianoroll=config)
    model, history = train_rbm(corpus, out, mc, tc, resume=resume, overwrite=force, log=click.echo)
    dist.shutdown()
    last = history[-1] if history else {}
    val = f", validation pseudo-log-likelihood {last['val_pll']:.1f} nats/window" if "val_pll" in last else ""
    echo(f"saved {out}/model.json  (epoch {last.get('epoch', epochs)}{val})")
