"""Real embodiments: arm drivers, motor buses, cameras, robot server (issue #4)."""
