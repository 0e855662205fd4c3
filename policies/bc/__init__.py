"""Behaviour cloning baseline: per-camera CNNs + state MLP + MiniLM language (FiLM or concatenation) -> an
MLP predicting a chunk of actions, trained with MSE. Small and honest: the yardstick for the other methods."""
