"""The headless pipeline: one module per stage, no UI imports."""
