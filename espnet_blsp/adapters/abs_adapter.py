"""Interface of a modality adapter: encoder frames -> LLM input embeddings."""

from abc import abstractmethod
from typing import Dict, Optional, Tuple

import torch
from espnet2.asr.postencoder.abs_postencoder import AbsPostEncoder


class AbsAdapter(AbsPostEncoder):
    """Maps speech-encoder outputs to the LLM's embedding space.

    An adapter is an ESPnet post-encoder: ``output_size()`` is the LLM's hidden
    size and ``forward`` turns a padded batch of encoder frames into a padded
    batch of embeddings the LLM reads in place of text tokens.

    Constructor convention, shared by every adapter so that the task can build
    any of them from a config: ``(input_size, output_size, input_layers=1,
    output_scale=1.0, **own_options)``.

    - ``input_size``: the width of one encoder frame. When the encoder hands
      over several layers, they arrive concatenated on the feature axis,
      layer-major, so ``input_size = input_layers * d``.
    - ``output_size``: the LLM's hidden size.
    - ``input_layers``: how many encoder layers ``input_size`` holds. Adapters
      that read one stream treat the concatenation as their input width.
    - ``output_scale``: the initial gain of the final normalisation, so that
      speech embeddings start at the scale of the LLM's token embeddings.
    """

    @abstractmethod
    def output_size(self) -> int:
        """Width of the produced embeddings (the LLM's hidden size)."""

    @abstractmethod
    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        target_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Adapt a padded batch.

        Positions past a row's length are padding, on input and on output: no
        valid output depends on padded input frames.

        Args:
            feats: (B, T, input_size) encoder outputs.
            feats_lengths: (B,) valid frames per utterance.
            target_lengths: (B,) the number of LLM tokens the output should
                have (known in training only). Adapters that predict their own
                output length use it; the others ignore it.

        Returns:
            (B, T', output_size) embeddings and their (B,) valid lengths.
        """

    def extra_losses(self) -> Dict[str, torch.Tensor]:
        """Auxiliary losses computed by the last ``forward`` call.

        Each is a scalar the model adds to its loss with a weight from its
        config (e.g. CIF's ``quantity_loss``, present only when that forward
        got ``target_lengths``). Call it right after ``forward``: the next
        forward replaces the result. Default: none.
        """
        return {}
