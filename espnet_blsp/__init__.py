"""espnet-blsp: BLSP speech-LLM alignment as an ESPnet plugin."""

__version__ = "0.1.0"
