"""Frozen Whisper encoder from any HF checkpoint (hub name or local dir)."""

from typing import List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.utils.dtype import resolve_dtype
from espnet_blsp.utils.dump_size import (  # the frame count, known without torch
    HOP_SAMPLES,
    MIN_WINDOW_SAMPLES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    valid_frames,
)
from espnet_blsp.utils.frozen import FrozenModule


class WhisperSpeechEncoder(AbsSpeechEncoder, FrozenModule):
    """Whisper's encoder, frozen, with outputs trimmed to each valid length.

    Audio longer than 30 s (Whisper's window) is encoded window by window and
    the frames concatenated; the original BLSP code truncated it. By default a
    window is encoded at its own length, with padded frames masked out of the
    convolutions and attention, so a 3 s clip costs a tenth of a padded 30 s
    window and gives the same frames alone or in any batch (up to the last
    STFT frame, which sees zeros instead of reflection padding in a batch). ``pad_to_30s``
    runs Whisper exactly as trained instead (every window padded to 30 s).

    Args:
        model_name_or_path: HF hub name or local checkpoint dir.
        dtype: Compute dtype of the frozen weights ("float32", "bfloat16", "auto": see
            ``utils.dtype.resolve_dtype``).
        pad_to_30s: Pad every window to 30 s, as Whisper's own decoding does.
        layers: Encoder layers to hand over (0-based; layer k's output before
            the final LayerNorm, as DeSTA2's training code taps them),
            concatenated on the feature axis in this order. None: the final
            output (after the LayerNorm), as BLSP uses it.
    """

    @typechecked
    def __init__(
        self,
        model_name_or_path: str,
        dtype: str = "float32",
        pad_to_30s: bool = False,
        layers: Optional[List[int]] = None,
    ):
        super().__init__()
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(
            model_name_or_path
        )
        whisper = WhisperModel.from_pretrained(
            model_name_or_path, dtype=resolve_dtype(dtype)
        )
        self.encoder = whisper.get_encoder()
        self.pad_to_30s = pad_to_30s
        depth = len(self.encoder.layers)
        if layers is not None and (not layers or not all(0 <= k < depth for k in layers)):
            raise ValueError(f"layers must be a non-empty list of 0..{depth - 1}, got {layers}")
        self.layers = layers
        self.freeze()

    def num_layers(self) -> int:
        return len(self.layers) if self.layers else 1

    def output_size(self) -> int:
        return self.encoder.config.d_model * self.num_layers()

    @torch.no_grad()
    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        windows: List[torch.Tensor] = []
        owners: List[int] = []
        for i, n in enumerate(speech_lengths.tolist()):
            if n < MIN_WINDOW_SAMPLES:
                raise ValueError(f"utterance {i} of the batch has {n} samples: too short to encode")
            for start in range(0, n, WINDOW_SAMPLES):
                if n - start < MIN_WINDOW_SAMPLES:
                    break  # a few ms past a 30 s boundary: nothing to encode
                windows.append(speech[i, start : min(n, start + WINDOW_SAMPLES)])
                owners.append(i)
        mel = self.feature_extractor(
            [w.float().cpu().numpy() for w in windows],
            sampling_rate=SAMPLE_RATE,
            padding="max_length" if self.pad_to_30s else "longest",
            return_tensors="pt",
        ).input_features
        param = next(self.encoder.parameters())
        mel = mel.to(param.device, param.dtype)
        if self.pad_to_30s:  # every frame is real: padding is part of the input
            mel_frames = torch.full((mel.size(0),), mel.size(-1), device=mel.device)
        else:
            mel_frames = torch.tensor([w.numel() // HOP_SAMPLES for w in windows], device=mel.device)
        hidden = self._encode(mel, mel_frames)
        per_utt: List[List[torch.Tensor]] = [[] for _ in range(speech.size(0))]
        for h, w, i in zip(hidden, windows, owners):
            per_utt[i].append(h[: valid_frames(w.numel())])
        frames = [torch.cat(p) for p in per_utt]
        lengths = torch.tensor([f.size(0) for f in frames], device=speech.device)
        out = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
        return out.float(), lengths

    def _encode(self, mel: torch.Tensor, mel_frames: torch.Tensor) -> torch.Tensor:
        """Whisper's encoder forward at the batch's length, padding masked.

        Padded positions are zeroed before each convolution (as its own zero
        padding would be) and masked as attention keys.

        Returns:
            (B, T, D) final outputs, or (B, T, len(layers) * D) the chosen
            layers' outputs.
        """
        enc = self.encoder
        x = mel * _frame_mask(mel_frames, mel.size(-1), mel.dtype)[:, None]
        x = torch.nn.functional.gelu(enc.conv1(x))
        x = x * _frame_mask(mel_frames, x.size(-1), x.dtype)[:, None]
        x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
        frames = (mel_frames + 1) // 2
        x = x + enc.embed_positions.weight[: x.size(1)]
        keep = _frame_mask(frames, x.size(1), torch.bool)
        mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
        mask = mask.masked_fill(~keep, torch.finfo(x.dtype).min)[:, None, None, :]
        taps = {}
        for k, layer in enumerate(enc.layers):
            x = layer(x, mask)
            if self.layers is not None and k in self.layers:
                taps[k] = x
        if self.layers is None:
            return enc.layer_norm(x)
        return torch.cat([taps[k] for k in self.layers], dim=-1)


def _frame_mask(lengths: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, size) 1 for valid frames."""
    return (torch.arange(size, device=lengths.device) < lengths[:, None]).to(dtype)
