"""Training state that resumes a run bit for bit, as safetensors + JSON (never pickle).

A checkpoint of a run is a folder

    checkpoints/step_000500/
        pretrained_model/        the policy (EMA weights if EMA is on): `embodied.checkpoint.load_policy` reads it
        training_state/
            state.json           step, data position, optimiser hyper-parameters, scheduler, EMA counters, scaler
            tensors.safetensors  "model/<name>" raw weights, "ema/<name>", "optimizer/<param id>/<key>"
            rng_rank<r>.json     python and numpy RNG state of rank r (numpy's key array is in the .safetensors)
            rng_rank<r>.safetensors  torch CPU (and CUDA) RNG state of rank r
    checkpoints/last             {"step": 500, "dir": "step_000500"}, replaced atomically

`accelerator.save_state` would pickle, so this module writes each piece
itself: every tensor goes to safetensors, everything else to JSON (Python
floats round-trip exactly through JSON's repr).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from embodied.checkpoint import CheckpointError

STATE_FORMAT = 1
PRETRAINED_DIR = "pretrained_model"
STATE_DIR = "training_state"
LAST_FILE = "last"


# ----------------------------------------------------------------------------- EMA


class EMA:
    """Exponential moving average of a model's floating-point weights.

    decay_t = min(decay, (1 + t) / (10 + t)) after t updates, so early
    averages are not dominated by the random initialisation. Non-float
    entries (e.g. counters) are copied, not averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}; use None to turn EMA off")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach(), 1.0 - d)
            else:
                s.copy_(v)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Temporarily load the averaged weights into `model` (e.g. to save or evaluate it)."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            model.load_state_dict(raw)


# ----------------------------------------------------------------------------- optimiser / scheduler


def _flatten_optimizer(sd: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, plain = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{pid}/{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "state": plain,
                     "tuple_keys": sorted({k for g in sd["param_groups"] for k, v in g.items() if isinstance(v, tuple)})}


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], plain: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entry in plain["state"].items():
        state.setdefault(int(pid), {}).update(entry)
    tuple_keys = set(plain.get("tuple_keys", ()))
    groups = [{k: tuple(v) if k in tuple_keys else v for k, v in g.items()} for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def _scheduler_state(scheduler: Any) -> dict[str, Any]:
    # LambdaLR keeps its lambdas out of the JSON: the schedule is rebuilt from the config.
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}


def _load_scheduler(scheduler: Any, state: Mapping[str, Any]) -> None:
    scheduler.load_state_dict(dict(state) | {"lr_lambdas": [None] * len(scheduler.lr_lambdas)})


# ----------------------------------------------------------------------------- RNG


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch (CPU, CUDA), numpy and python RNG states as (tensors, JSON)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy/keys"] = torch.from_numpy(np.asarray(keys, np.uint32).view(np.int32).copy())
    version, internal, gauss_next = random.getstate()
    plain = {"numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
             "python": {"version": version, "state": list(internal), "gauss_next": gauss_next}}
    return tensors, plain


def set_rng_state(tensors: Mapping[str, torch.Tensor], plain: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda/"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = plain["numpy"]
    np.random.set_state((n["kind"], tensors["numpy/keys"].numpy().view(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = plain["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# ----------------------------------------------------------------------------- whole state


def save_training_state(directory: str | Path, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, ema: EMA | None, scaler: Any = None, extra: Mapping[str, Any] | None = None
                        ) -> None:
    """Write everything but the RNG (see `save_rng`, one file per rank) into `directory`.

    step: optimiser steps taken; the data position is the same number of global batches.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_plain = _flatten_optimizer(optimizer.state_dict())
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()} | opt_tensors
    if ema is not None:
        tensors |= {f"ema/{k}": v for k, v in ema.shadow.items()}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(directory / "tensors.safetensors"))
    state = {
        "format": STATE_FORMAT,
        "step": int(step),
        "batches_consumed": int(step),
        "optimizer": opt_plain,
        "scheduler": _scheduler_state(scheduler),
        "ema": None if ema is None else {"decay": ema.decay, "updates": ema.updates},
        "scaler": None if scaler is None else scaler.state_dict(),
        "extra": dict(extra or {}),
    }
    _write_json(directory / "state.json", state)


def save_rng(directory: str | Path, rank: int) -> None:
    tensors, plain = rng_state()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(directory) / f"rng_rank{rank}.safetensors"))
    _write_json(Path(directory) / f"rng_rank{rank}.json", plain)


def load_training_state(directory: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, ema: EMA | None, scaler: Any = None, rank: int = 0) -> dict[str, Any]:
    """Restore what `save_training_state` + `save_rng` wrote, in place; returns state.json's contents.

    Raises CheckpointError naming a missing or damaged file.
    """
    directory = Path(directory)
    state = read_json(directory / "state.json")
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(directory / "state.json", f"format {state.get('format')!r}, this version reads "
                                                        f"{STATE_FORMAT}")
    tensors = _load_tensors(directory / "tensors.safetensors")
    rng_file = directory / f"rng_rank{rank}.safetensors"
    if not rng_file.is_file():
        raise CheckpointError(rng_file, "missing: the run was saved with fewer processes than it resumes with; "
                                        "resume with the same number of processes")
    rng_tensors, rng_plain = _load_tensors(rng_file), read_json(directory / f"rng_rank{rank}.json")

    model_sd = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(model_sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(directory / "tensors.safetensors", f"weights do not fit this model ({e})") from e
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    _load_scheduler(scheduler, state["scheduler"])
    if ema is not None:
        if state["ema"] is None:
            raise CheckpointError(directory / "state.json", "holds no EMA weights but EMA is on; resume with the "
                                                            "run's own settings (ema_decay=None)")
        ema.shadow = {k[len("ema/"):]: v.to(ema.shadow[k[len("ema/"):]].device)
                      for k, v in tensors.items() if k.startswith("ema/")}
        ema.updates = int(state["ema"]["updates"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(rng_tensors, rng_plain)
    return state


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError

    if not path.is_file():
        raise CheckpointError(path, "missing; the training state is incomplete — resume from an earlier checkpoint")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"damaged safetensors file ({e}); resume from an earlier checkpoint") from e


# ----------------------------------------------------------------------------- checkpoint folders


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def write_last_pointer(checkpoints: str | Path, step: int) -> None:
    """Point checkpoints/last at step_XXXXXX (atomic: readers see the old or the new pointer, never half)."""
    checkpoints = Path(checkpoints)
    tmp = checkpoints / f".{LAST_FILE}.tmp-{os.getpid()}"
    _write_json(tmp, {"step": int(step), "dir": step_dir_name(step)})
    os.replace(tmp, checkpoints / LAST_FILE)


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder checkpoints/last points at, or None when the run has saved nothing yet."""
    pointer = Path(run_dir) / "checkpoints" / LAST_FILE
    if not pointer.is_file():
        return None
    target = pointer.parent / read_json(pointer)["dir"]
    if not target.is_dir():
        raise CheckpointError(target, f"missing, though {pointer} points at it; delete {pointer} to start over "
                                      "or point it at an existing step folder")
    return target


def pretrained_dir(path: str | Path) -> Path:
    """A run folder, a checkpoint step folder or a pretrained folder -> the pretrained policy folder in it."""
    path = Path(path)
    if (path / "policy.json").is_file():
        return path
    if (path / PRETRAINED_DIR).is_dir():
        return path / PRETRAINED_DIR
    last = last_checkpoint(path)
    if last is not None:
        return last / PRETRAINED_DIR
    raise CheckpointError(path, "holds no policy: expected a pretrained policy folder (policy.json), a checkpoint "
                                "step folder, or a run folder with checkpoints/last")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise CheckpointError(path, "missing; the checkpoint is incomplete") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"not valid JSON ({e}); the file is damaged") from e


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
