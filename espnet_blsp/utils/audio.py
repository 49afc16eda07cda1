"""Reading speech listed in Kaldi-style scp files."""

from typing import Sequence

import kaldiio
import numpy as np
import soundfile

SPEECH_TYPES = ("sound", "kaldi_ark")


def load_speech(value: str, kind: str) -> np.ndarray:
    """One utterance: a 16 kHz waveform (``sound``) or cached frames (``kaldi_ark``)."""
    if kind == "sound":
        wav, rate = soundfile.read(value, dtype="float32")
        if rate != 16000 or wav.ndim != 1:
            raise ValueError(f"{value}: {rate} Hz, shape {wav.shape}; 16 kHz mono expected")
        return wav
    if kind == "kaldi_ark":
        return np.asarray(kaldiio.load_mat(value), dtype=np.float32)
    raise ValueError(f"speech type must be one of {SPEECH_TYPES}, got {kind}")


def pad_batch(arrays: Sequence[np.ndarray]):
    """Zero-pads arrays along the first axis; returns (tensor, lengths)."""
    import torch

    lengths = torch.tensor([a.shape[0] for a in arrays])
    out = torch.zeros((len(arrays), int(lengths.max())) + arrays[0].shape[1:])
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = torch.from_numpy(a)
    return out, lengths


def length_sorted_batches(items: Sequence, sizes: Sequence[int], batch_size: int):
    """Batches of indices into ``items`` with similar sizes, longest first."""
    order = sorted(range(len(items)), key=lambda i: -sizes[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
