"""Names of the robots in this package (imports nothing heavy)."""
