"""Names of the policies in this package (imports nothing heavy)."""

from embodied.registry import register

register(
    "scripted-expert",
    "policies.scripted:ScriptedExpertPolicy",
    kind="policy",
    description="privileged-state expert of a simulated task (needs the env)",
)
