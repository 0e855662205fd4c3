"""Names of the policies in this package (imports nothing heavy). Filled by issue #3 on."""

from embodied.registry import register

register("bc", "policies.bc.policy:BCPolicy", kind="policy", extra="torch",
         description="behaviour-cloning baseline: per-camera CNN + state MLP + MiniLM FiLM -> action chunk (MSE)")

register("mdt", "policies.mdt.policy:MDTPolicy", kind="policy", extra="torch",
         description="MDT diffusion transformer: language/image goals, EDM + DDIM action chunks, MGF and CLA")
