"""MDT: Multimodal Diffusion Transformer policy (Reuss et al. 2024), small enough for a CPU.

    from policies.mdt import MDTConfig, MDTPolicy
    policy = MDTPolicy.from_dataset_meta(MDTConfig(), dataset.spec, dataset.stats)

Modules: configuration (the dataclass), vision (per-camera GroupNorm CNN),
model (encoder, AdaLN-Zero decoder, MGF, CLA), edm (preconditioning, σ
density, DDIM sampler), policy (normalisation, goals, loss, predict, act).
Importing this package imports torch; the registry names it lazily.
"""

from policies.mdt.configuration import MDTConfig
from policies.mdt.policy import MDTPolicy

__all__ = ["MDTConfig", "MDTPolicy"]
