"""The robot link's wire format: msgpack maps with numpy arrays as raw bytes. No pickle, ever.

Every message is one msgpack map with `v` (protocol version), `type` and
`seq`. Arrays travel as msgpack extension type 1:

    ext 1 payload = dtype code (1 byte) | ndim (1 byte) | shape (ndim x uint32, little endian) | raw C-order bytes

so two 128x128 RGB images and their depth maps cost their own size plus a
few bytes, and decoding is a `np.frombuffer` (no copy). Only the dtypes in
`DTYPES` are accepted; sizes are checked against the shape; anything else is
a `WireError` that says what was wrong, which the server answers with an
error message instead of crashing.

Observations, actions and step results are converted here and only here
(`encode_observation` / `decode_observation`, ...), so the server and the
client agree by construction.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from embodied.types import CameraInfo, Observation

VERSION = 1
ARRAY_EXT = 1
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_NDIM = 8
DTYPES: dict[int, np.dtype] = {1: np.dtype("<u1"), 2: np.dtype("<f4"), 3: np.dtype("<f8"), 4: np.dtype("<i8"),
                               5: np.dtype("<i4"), 6: np.dtype("?")}
_CODES = {dt: code for code, dt in DTYPES.items()}

# type -> required fields (name -> python type(s)) of client requests
REQUESTS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "hello": {},
    "reset": {},
    "step": {"action": np.ndarray, "obs_id": int},
    "heartbeat": {},
    "hold": {},
    "estop": {},
    "release": {},
    "status": {},
}


class WireError(ValueError):
    """A message that does not follow this protocol (bad bytes, bad type, missing or ill-typed field)."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        code = _CODES.get(np.dtype(dt))
        if code is None:
            raise WireError(f"arrays of dtype {obj.dtype} cannot be sent; use one of "
                            f"{sorted(str(d) for d in DTYPES.values())}")
        if arr.ndim > MAX_NDIM:
            raise WireError(f"arrays of {arr.ndim} dimensions cannot be sent (at most {MAX_NDIM})")
        head = struct.pack(f"<BB{arr.ndim}I", code, arr.ndim, *arr.shape)
        return msgpack.ExtType(ARRAY_EXT, head + arr.astype(dt, copy=False).tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise WireError(f"cannot send a {type(obj).__name__}: {obj!r:.80}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != ARRAY_EXT:
        raise WireError(f"unknown msgpack extension type {code}")
    if len(data) < 2:
        raise WireError("array header is truncated")
    dcode, ndim = data[0], data[1]
    if dcode not in DTYPES:
        raise WireError(f"unknown array dtype code {dcode}")
    if ndim > MAX_NDIM or len(data) < 2 + 4 * ndim:
        raise WireError(f"array header claims {ndim} dimensions; at most {MAX_NDIM}, or it is truncated")
    shape = struct.unpack_from(f"<{ndim}I", data, 2)
    dt = DTYPES[dcode]
    body = memoryview(data)[2 + 4 * ndim:]
    if math.prod(shape) * dt.itemsize != len(body):
        raise WireError(f"array of shape {shape} and dtype {dt} needs {math.prod(shape) * dt.itemsize} bytes, "
                        f"got {len(body)}")
    return np.frombuffer(body, dtype=dt).reshape(shape)


def pack(message: Mapping[str, Any]) -> bytes:
    """One message -> bytes (adds the protocol version)."""
    return msgpack.packb({"v": VERSION, **message}, default=_default, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    """Bytes -> one message map; raises WireError for anything that is not a well-formed message."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        msg = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True)
    except WireError:
        raise
    except Exception as e:
        raise WireError(f"not a msgpack message ({type(e).__name__}: {e})") from e
    if not isinstance(msg, dict):
        raise WireError(f"a message must be a map, got {type(msg).__name__}")
    if msg.get("v") != VERSION:
        raise WireError(f"protocol version {msg.get('v')!r}; this side speaks {VERSION}")
    if not isinstance(msg.get("type"), str):
        raise WireError("a message needs a string 'type'")
    return msg


def check_request(msg: Mapping[str, Any]) -> None:
    """Raise WireError unless `msg` is a known request with its required fields of the right types."""
    kind = msg["type"]
    if kind not in REQUESTS:
        raise WireError(f"unknown request type {kind!r}; known: {sorted(REQUESTS)}")
    if not isinstance(msg.get("seq"), int):
        raise WireError(f"{kind}: 'seq' must be an integer")
    for name, typ in REQUESTS[kind].items():
        if not isinstance(msg.get(name), typ) or isinstance(msg.get(name), bool):
            raise WireError(f"{kind}: field {name!r} must be {getattr(typ, '__name__', typ)}, "
                            f"got {type(msg.get(name)).__name__}")
    if kind == "reset":
        if msg.get("instruction") is not None and not isinstance(msg["instruction"], str):
            raise WireError("reset: 'instruction' must be a string or absent")
        if msg.get("seed") is not None and (not isinstance(msg["seed"], int) or isinstance(msg["seed"], bool)):
            raise WireError("reset: 'seed' must be an integer or absent")


# ---------------------------------------------------------------------------- observations

def encode_observation(obs: Observation) -> dict[str, Any]:
    return {
        "images": dict(obs.images), "depth": dict(obs.depth), "state": dict(obs.state),
        "instruction": obs.instruction, "timestamp": float(obs.timestamp),
        "cameras": {k: {"K": np.asarray(c.intrinsics, np.float32), "T": np.asarray(c.extrinsics, np.float32)}
                    for k, c in obs.cameras.items()},
    }


def decode_observation(d: Any) -> Observation:
    if not isinstance(d, dict):
        raise WireError("an observation must be a map")
    try:
        return Observation(
            images={str(k): v for k, v in d["images"].items()},
            depth={str(k): v for k, v in d["depth"].items()},
            state={str(k): v for k, v in d["state"].items()},
            instruction=d.get("instruction"),
            timestamp=float(d["timestamp"]),
            cameras={str(k): CameraInfo(c["K"], c["T"]) for k, c in d.get("cameras", {}).items()},
        )
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise WireError(f"malformed observation ({type(e).__name__}: {e})") from e


def jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    """Step info made sendable: arrays stay arrays, other unknown objects become their text."""
    def conv(v: Any) -> Any:
        if isinstance(v, (str, int, float, bool, type(None), np.ndarray, np.generic)):
            return v
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return str(v)
    return {str(k): conv(v) for k, v in info.items()}
