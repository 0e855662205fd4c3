"""embodied: one stack to train, deploy and correct language-conditioned robot policies.

The shared interface lives here; `envs`, `policies` and `hardware` plug in
through `embodied.registry`.
"""

from embodied.protocols import Correctable, Embodiment, Policy
from embodied.types import (
    Action,
    ActionSpec,
    CameraInfo,
    CameraSpec,
    Correction,
    EmbodimentSpec,
    Observation,
    SpecMismatchError,
    StepResult,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ActionSpec",
    "CameraInfo",
    "CameraSpec",
    "Correctable",
    "Correction",
    "Embodiment",
    "EmbodimentSpec",
    "Observation",
    "Policy",
    "SpecMismatchError",
    "StepResult",
]
