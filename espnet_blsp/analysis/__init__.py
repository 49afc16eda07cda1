"""Analyses of trained BLSP models (e.g. how the LLM represents speech vs. text)."""
