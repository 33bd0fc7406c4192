"""Checkpoints: weights as safetensors plus a JSON config, written atomically.

A checkpoint ``NAME`` is two files side by side:

- ``NAME.safetensors``  the model's tensors (and, for resuming, training state);
- ``NAME.json``         ``{"model_type", "model_config", "train_config", "epoch", "history", ...}``.

The JSON is written last, so a checkpoint is complete exactly when both files
load. ``model_type`` names the model in :data:`moodsong.models.MODELS`, the one registry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from moodsong.errors import BadCheckpointError
from moodsong.fileio import atomic_path, write_text_atomic
from moodsong.models import MODELS, build_model


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, config)`` paths for a checkpoint given by either file or the common stem."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    if p.is_dir():
        p = p / "model"
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    **meta: Any,
) -> Path:
    """Save ``model`` (its ``state_dict``) and metadata. Returns the JSON path.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point weights smaller, for shipped models;
    loading casts them back to the model's own precision.
    """
    weights, cfg = checkpoint_paths(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    for k, v in (extra_tensors or {}).items():
        tensors[f"__state__.{k}"] = v.detach().cpu().contiguous()
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp))
    doc = {"model_type": model.model_type, "model_config": model.config.to_dict(), **meta}
    write_text_atomic(cfg, json.dumps(doc, indent=2, default=_json_default))
    return cfg


def _json_default(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_meta(path: str | os.PathLike) -> dict:
    _, cfg = checkpoint_paths(path)
    if not cfg.is_file():
        raise BadCheckpointError(f"{cfg}: no such checkpoint config")
    try:
        meta = json.loads(cfg.read_text(encoding="utf-8"))
        meta["model_type"], meta["model_config"]
    except (ValueError, KeyError, TypeError):
        raise BadCheckpointError(f"{cfg}: not a moodsong checkpoint config (corrupt or truncated JSON)") from None
    return meta


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict, dict]:
    """Load ``(model, meta, extra_tensors)``.

    Raises
    ------
    BadCheckpointError
        If either file is missing, truncated, corrupt, or does not match its config.
    """
    weights, _ = checkpoint_paths(path)
    meta = read_meta(path)
    if meta["model_type"] not in MODELS:
        raise BadCheckpointError(f"{weights}: unknown model type {meta['model_type']!r}")
    if not weights.is_file():
        raise BadCheckpointError(f"{weights}: weights file is missing")
    try:
        tensors = load_file(str(weights), device=str(map_location))
    except Exception as exc:
        raise BadCheckpointError(f"{weights}: cannot read weights (corrupt or truncated: {exc})") from None
    try:
        model = build_model(meta["model_type"], meta["model_config"])
        state = {k: v for k, v in tensors.items() if not k.startswith("__state__.")}
        model.load_state_dict(state)
    except Exception as exc:
        raise BadCheckpointError(f"{weights}: weights do not match the config ({exc})") from None
    extra = {k.removeprefix("__state__."): v for k, v in tensors.items() if k.startswith("__state__.")}
    return model.to(map_location), meta, extra


def describe_checkpoint(path: str | os.PathLike) -> dict:
    model, meta, _ = load_checkpoint(path)
    n = sum(p.numel() for p in model.state_dict().values())
    hist = meta.get("history") or []
    out = {
        "checkpoint": str(checkpoint_paths(path)[1]),
        "model type": meta["model_type"],
        "parameters": n,
        "model config": json.dumps(meta["model_config"]),
        "epochs trained": meta.get("epoch", "?"),
        "trained on": meta.get("source", "?"),
    }
    if hist:
        out["last metrics"] = json.dumps({k: v for k, v in hist[-1].items()})
    return out
