"""Names of the policies in this package (imports nothing heavy). Filled by issue #3 on."""
