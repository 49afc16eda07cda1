"""Losses other than the LLM's own LM loss."""
