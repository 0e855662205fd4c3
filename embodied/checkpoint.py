"""Policy checkpoints: safetensors weights + JSON, never pickle.

A pretrained-policy folder holds

    policy.json              {"format": 1, "policy_class": "pkg.mod:Class", "config": {...},
                              "normalization": {"modes": ..., "mask": ...}, "extra": {...}}
    model.safetensors        the weights
    normalization.safetensors  {"feature/stat": tensor}
    embodiment_spec.json     the EmbodimentSpec the policy was trained on

Folders are written under a temporary name and renamed into place, so a
crash never leaves a half-written checkpoint under the final name. Loading a
folder with a missing or damaged file raises `CheckpointError` naming the
file; loading against an embodiment whose spec differs raises
`SpecMismatchError` listing the differences.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embodied.normalize import Normalizer
from embodied.types import EmbodimentSpec

FORMAT = 1
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
NORM_FILE = "normalization.safetensors"
SPEC_FILE = "embodiment_spec.json"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing a file or holds a damaged one."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        super().__init__(f"{path}: {problem}")


@dataclasses.dataclass
class Checkpoint:
    policy_class: str
    config: dict[str, Any]
    weights: dict[str, Any]
    spec: EmbodimentSpec
    normalizer: Normalizer
    extra: dict[str, Any]
    path: Path


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON data (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a (possibly nested) dataclass config; unknown keys are an error, lists become tuples."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}; the checkpoint is from another version")
    kwargs = {}
    hints = _resolved_hints(cls)
    for name, value in data.items():
        t = hints.get(name)
        if dataclasses.is_dataclass(t) and isinstance(value, Mapping):
            value = config_from_dict(t, value)
        elif isinstance(value, list):
            value = _tuples(value)
        kwargs[name] = value
    return cls(**kwargs)


def _resolved_hints(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # unresolvable forward refs: fall back to raw annotations
        return {}


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def save_pretrained(
    directory: str | Path,
    *,
    policy_class: str,
    config: Any,
    weights: Mapping[str, Any],
    spec: EmbodimentSpec,
    normalizer: Normalizer,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (replacing an existing one at `directory`)."""
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        cfg = config if isinstance(config, dict) else config_to_dict(config)
        meta = {"format": FORMAT, "policy_class": policy_class, "config": cfg,
                "normalization": normalizer.config(), "extra": dict(extra or {})}
        (tmp / POLICY_FILE).write_text(json.dumps(meta, indent=2, default=str))
        (tmp / SPEC_FILE).write_text(spec.to_json())
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS_FILE))
        save_file({k: torch.as_tensor(v).contiguous() for k, v in normalizer.to_tensors().items()},
                  str(tmp / NORM_FILE))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_pretrained(directory: str | Path, expect_spec: EmbodimentSpec | None = None) -> Checkpoint:
    """Read a checkpoint folder; check it against `expect_spec` (the embodiment it will drive)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(directory, "no such checkpoint folder")
    for name in (POLICY_FILE, WEIGHTS_FILE, NORM_FILE, SPEC_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(directory / name, "missing; the checkpoint is incomplete — save it again")
    meta = _read_json(directory / POLICY_FILE)
    if meta.get("format") != FORMAT:
        raise CheckpointError(directory / POLICY_FILE, f"format {meta.get('format')!r}, this version reads {FORMAT}")
    try:
        spec = EmbodimentSpec.from_dict(_read_json(directory / SPEC_FILE))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(directory / SPEC_FILE, f"not a valid embodiment spec ({e})") from e
    tensors = {}
    for name in (WEIGHTS_FILE, NORM_FILE):
        try:
            tensors[name] = load_file(str(directory / name))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(directory / name, f"damaged safetensors file ({e}); re-download or re-save it") from e
    if expect_spec is not None:
        spec.check_compatible(expect_spec, what=f"checkpoint {directory}")
    normalizer = Normalizer.from_tensors({k: v.numpy() for k, v in tensors[NORM_FILE].items()}, meta["normalization"])
    return Checkpoint(meta["policy_class"], meta["config"], tensors[WEIGHTS_FILE], spec, normalizer,
                      meta.get("extra", {}), directory)


def load_policy(directory: str | Path, expect_spec: EmbodimentSpec | None = None, **kwargs: Any) -> Any:
    """Build the policy a checkpoint folder holds, via its class's `from_pretrained`."""
    meta = _read_json(Path(directory) / POLICY_FILE)
    module, _, attr = meta["policy_class"].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls.from_pretrained(directory, expect_spec=expect_spec, **kwargs)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(path, "missing") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"not valid JSON ({e}); the file is damaged") from e
