"""Register every simulated env by name. Imports nothing heavy: each suite's
registration module only calls `embodied.registry.register` with strings."""

import importlib

for _suite in ("envs.tabletop.registration", "envs.metaworld.registration"):
    try:
        importlib.import_module(_suite)
    except ModuleNotFoundError as e:  # a suite still being written, not a missing dependency
        if e.name != _suite:
            raise
