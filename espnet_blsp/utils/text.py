"""Transcript text as the LLM reads it."""


def sentence_case(text: str) -> str:
    """LibriSpeech-style ALL CAPS -> "All caps", which LLMs read better."""
    return text.capitalize() if text.isupper() else text
