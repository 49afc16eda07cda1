"""Frozen Whisper encoder from any HF checkpoint (hub name or local dir)."""

from typing import List, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.utils.frozen import FrozenModule

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper always sees 30 s windows.


class WhisperSpeechEncoder(AbsSpeechEncoder, FrozenModule):
    """Whisper's encoder, frozen, with outputs trimmed to each valid length.

    Whisper was trained on 30 s windows, so each window is padded to 30 s as
    Whisper expects, and audio longer than 30 s is encoded window by window and
    the frames concatenated (the original BLSP code truncated at 30 s).

    Args:
        model_name_or_path: HF hub name or local checkpoint dir.
        dtype: Compute dtype of the frozen weights ("float32", "bfloat16", ...).
    """

    @typechecked
    def __init__(self, model_name_or_path: str, dtype: str = "float32"):
        super().__init__()
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(
            model_name_or_path
        )
        whisper = WhisperModel.from_pretrained(
            model_name_or_path, dtype=getattr(torch, dtype)
        )
        self.encoder = whisper.get_encoder()
        self.freeze()

    def output_size(self) -> int:
        return self.encoder.config.d_model

    @torch.no_grad()
    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        windows: List[torch.Tensor] = []
        owners: List[int] = []
        for i, n in enumerate(speech_lengths.tolist()):
            for start in range(0, max(n, 1), WINDOW_SAMPLES):
                windows.append(speech[i, start : min(n, start + WINDOW_SAMPLES)])
                owners.append(i)
        mel = self.feature_extractor(
            [w.float().cpu().numpy() for w in windows],
            sampling_rate=SAMPLE_RATE,
            padding="max_length",
            return_tensors="pt",
        ).input_features
        param = next(self.encoder.parameters())
        hidden = self.encoder(mel.to(param.device, param.dtype)).last_hidden_state
        per_utt: List[List[torch.Tensor]] = [[] for _ in range(speech.size(0))]
        for h, w, i in zip(hidden, windows, owners):
            per_utt[i].append(h[: valid_frames(w.numel())])
        frames = [torch.cat(p) for p in per_utt]
        lengths = torch.tensor([f.size(0) for f in frames], device=speech.device)
        out = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
        return out.float(), lengths


def valid_frames(num_samples: int) -> int:
    """Encoder frames that carry audio for ``num_samples`` samples."""
    mel_frames = num_samples // 160  # HF drops the STFT's last frame.
    return max(1, (mel_frames + 1) // 2)
