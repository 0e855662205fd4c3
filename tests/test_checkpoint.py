"""Policy checkpoints: safetensors + JSON, atomic, and loud about damage and mismatch."""

import dataclasses
import json

import pytest
import torch

from embodied import ActionSpec, CameraSpec, EmbodimentSpec, SpecMismatchError
from embodied.checkpoint import CheckpointError, config_from_dict, config_to_dict, load_pretrained, save_pretrained
from embodied.normalize import Normalizer

STATE = {"joint_pos": 7, "ee_pos": 3, "ee_quat": 4, "gripper": 1}
SPEC = EmbodimentSpec("panda", (CameraSpec("front", 64, 64),), STATE, ActionSpec.ee_delta(0.03, 0.2, 10))
NORM = Normalizer({"action": {"min": [-1.0] * 7, "max": [1.0] * 7}}, {"action": "min_max"})


@dataclasses.dataclass
class Inner:
    width: int = 8
    kernels: tuple[int, ...] = (3, 3)


@dataclasses.dataclass
class Cfg:
    lr: float = 1e-3
    inner: Inner = dataclasses.field(default_factory=Inner)


def save(path, spec=SPEC):
    w = {"layer.weight": torch.arange(6.0).reshape(2, 3)}
    return save_pretrained(path, policy_class="x:Y", config=Cfg(), weights=w, spec=spec, normalizer=NORM)


def test_round_trip(tmp_path):
    ck = load_pretrained(save(tmp_path / "ck"), expect_spec=SPEC)
    assert torch.equal(ck.weights["layer.weight"], torch.arange(6.0).reshape(2, 3))
    assert config_from_dict(Cfg, ck.config) == Cfg()
    assert ck.spec == SPEC and ck.policy_class == "x:Y"
    assert not list(tmp_path.glob(".*tmp*"))  # no temp folder left behind


def test_overwrite_is_atomic_and_leaves_one_folder(tmp_path):
    save(tmp_path / "ck")
    save(tmp_path / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_damaged_files_are_named(tmp_path):
    path = save(tmp_path / "ck")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_pretrained(path)
    path = save(tmp_path / "ck2")
    (path / "policy.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="policy.json"):
        load_pretrained(path)
    path = save(tmp_path / "ck3")
    (path / "normalization.safetensors").unlink()
    with pytest.raises(CheckpointError, match="normalization.safetensors.*missing"):
        load_pretrained(path)


def test_wrong_embodiment_is_refused(tmp_path):
    path = save(tmp_path / "ck")
    other = dataclasses.replace(SPEC, name="ur5e", cameras=(CameraSpec("front", 128, 128),))
    with pytest.raises(SpecMismatchError, match="128x128"):
        load_pretrained(path, expect_spec=other)


def test_config_dict_rejects_unknown_fields():
    d = config_to_dict(Cfg())
    assert json.loads(json.dumps(d)) == d
    with pytest.raises(ValueError, match="no fields"):
        config_from_dict(Cfg, d | {"momentum": 0.9})
    assert config_from_dict(Cfg, d).inner.kernels == (3, 3)
