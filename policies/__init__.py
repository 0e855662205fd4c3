"""Learning and planning methods, one sub-package each. Policies see only specs,
observations and actions: they never import `envs` or `hardware`."""
