"""``moodsong evaluate``."""

from __future__ import annotations

import json

import click

from moodsong.cli.group import main


@main.command()
@click.argument("checkpoint", type=click.Path())
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True)
@click.option("--ais-chains", default=100, show_default=True,
              help="AIS chains per partition function (RBM-based models).")
@click.option("--ais-betas", default=1000, show_default=True, help="AIS inverse temperatures (RBM-based models).")
@click.option("--samples", default=10, show_default=True, help="Draws per frame for the expected frame-level accuracy.")
@click.option("--gibbs-steps", default=25, show_default=True, help="Gibbs sweeps per draw (RBM-based models).")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N sequences of the split.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (1 is fastest on a busy machine).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(checkpoint, data, split, ais_chains, ais_betas, samples, gibbs_steps, limit, seed, device, threads,
             as_json):
    """Benchmark a model: NLL per time step (nats) and expected frame-level accuracy.

    CHECKPOINT is a run folder, a model.json, or a shipped model's name
    (jsb-wavenet, nottingham-wavenet, musedata-wavenet, piano-midi-wavenet, ...).
    DATA is a polyphonic-benchmark pickle or JSON (dict of train/valid/test
    lists of sequences of MIDI-pitch tuples), e.g. JSB Chorales. The NLL is
    exact for WaveNet-NADE; for RBM-based models each partition function is
    estimated by annealed importance sampling and its standard error is shown.

    \b
    Examples:
      moodsong evaluate runs/jsb-wavenet jsb_chorales.pkl
      moodsong evaluate nottingham-wavenet nottingham_trainvalid.pkl --split valid
      moodsong evaluate runs/jsb-rnnrbm/model.json jsb_chorales.pkl --split valid --ais-chains 50
      moodsong evaluate runs/jsb-rnnrbm jsb_chorales.pkl --json > result.json
    """
    import torch

    from moodsong.errors import MoodsongError
    from moodsong.evaluation.likelihood import evaluate_model, load_benchmark, model_representation
    from moodsong.models.checkpoint import load_checkpoint
    from moodsong.models.generate import SHIPPED_MODELS, shipped_model_path
    from moodsong.training.rbm import resolve_device

    if threads:
        torch.set_num_threads(threads)
    if ais_chains < 1 or ais_betas < 2 or samples < 1:
        raise MoodsongError("--ais-chains and --samples must be at least 1, --ais-betas at least 2")
    path = shipped_model_path(checkpoint) if checkpoint in SHIPPED_MODELS else checkpoint
    model, meta, _ = load_checkpoint(path, map_location=resolve_device(device))
    seqs = load_benchmark(data, split, model_representation(model))
    if limit:
        seqs = seqs[:limit]
    width = getattr(model.config, "num_visible", None)
    if model.model_type != "rbm" and seqs[0].shape[1] != width:
        raise MoodsongError(f"the data's frames are {seqs[0].shape[1]} wide but the model expects {width}")
    res = evaluate_model(model, seqs, ais_chains=ais_chains, ais_betas=ais_betas, samples=samples,
                         gibbs_steps=gibbs_steps, seed=seed, progress=not as_json)
    res.update(checkpoint=str(checkpoint), data=str(data), split=split, num_sequences=len(seqs))
    if as_json:
        click.echo(json.dumps(res))
        return
    acc = "n/a (model predicts no next step)" if res.get("accuracy") is None else f"{100 * res['accuracy']:.2f} %"
    click.echo(f"{res['model_type']} on {data} [{split}]: {len(seqs)} sequences, {res['num_steps']} steps")
    click.echo(f"  NLL per step: {res['nll']:.4f} nats  (+/- {res['nll_stderr']:.4f}; {res['method']})")
    click.echo(f"  expected frame-level accuracy: {acc}")
