"""Shared fixtures: tiny random checkpoints, built once per session."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    return tiny_models.make_llm(tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="session")
def tiny_base_llm_dir(tmp_path_factory) -> Path:
    """A tiny LLM without a chat template (the paper's prompt applies)."""
    return tiny_models.make_llm(tmp_path_factory.mktemp("base_llm"), chat_template=False)


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    return tiny_models.make_whisper(tmp_path_factory.mktemp("whisper"))
