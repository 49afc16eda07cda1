"""Speech + instruction -> text with a trained BLSP model.

``python -m espnet_blsp.bin.blsp_inference --train_config exp/blsp/config.yaml \\
    --model_file exp/blsp/valid.loss.ave.pth \\
    --data_path_and_name_and_type dump/encoder/test/feats.scp,speech,kaldi_ark \\
    --instruction "Transcribe the speech. <speech>" --output exp/.../asr_text``

With ``--score_text`` it writes each utterance's teacher-forced loss of the
given reference response instead of generating.
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from typeguard import typechecked

from espnet_blsp.bin.pack import locate_pretrained
from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.encoders.precomputed_encoder import PrecomputedEncoder
from espnet_blsp.llm.batch import Row, response_scores
from espnet_blsp.llm.prompt import SPEECH, PromptSpec
from espnet_blsp.llm.respond import respond
from espnet_blsp.tasks.registry import build_encoder, build_model_from_config
from espnet_blsp.utils.audio import load_speech, pad_batch
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.frozen import load_trained
from espnet_blsp.utils.kaldi_dir import read_kv


class Speech2Response:
    """Answers instructions about speech, like ESPnet's ``Speech2Text``.

    Example:
        >>> s2r = Speech2Response("exp/blsp/config.yaml", "exp/blsp/valid.loss.ave.pth")
        >>> s2r(waveform_16k, "Transcribe the speech. <speech>")
        >>> s2r(waveform_16k, "transcription")  # a registered instruction

    Args:
        train_config: The ``config.yaml`` written by training.
        model_file: The trained weights (adapter, LoRA, ...) written by
            training with ``train_config``, e.g. ``valid.loss.ave.pth``; None
            keeps the random init (the untrained-adapter baseline).
        device: Torch device.
        generate_kwargs: Passed to HF ``generate`` (default greedy, 64 tokens).
    """

    @typechecked
    def __init__(
        self,
        train_config: Union[Path, str],
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
        generate_kwargs: Optional[Dict] = None,
    ):
        # ESPnet would load model_file with strict=False. load_trained checks it
        # while the trainable weights still tell which keys the file must hold.
        self.model, self.train_args = build_model_from_config(train_config, device)
        if model_file is not None:
            load_trained(self.model, model_file, train_config)
        # Nothing trains here: a LoRA model's prompt prefix is then cached again.
        self.model.eval().requires_grad_(False)
        self.generate_kwargs = generate_kwargs or {"max_new_tokens": 64, "do_sample": False}
        self._waveform_encoder = None

    @classmethod
    @typechecked
    def from_pretrained(
        cls,
        source: Union[Path, str],
        model_file: Optional[str] = None,
        cache_dir: Optional[Union[Path, str]] = None,
        **kwargs,
    ) -> "Speech2Response":
        """The trained model of an experiment dir or of an archive written by
        ``espnet_blsp.bin.pack`` (see :func:`espnet_blsp.bin.pack.locate_pretrained`
        for the arguments; ``kwargs`` go to the constructor).

        Example:
            >>> s2r = Speech2Response.from_pretrained("exp/blsp_train_blsp/packed.zip")
            >>> s2r = Speech2Response.from_pretrained("exp/blsp_train_blsp", "valid.loss.best.pth")
        """
        return cls(*locate_pretrained(source, model_file, cache_dir), **kwargs)

    @torch.no_grad()
    def rows(
        self, speech: Sequence[np.ndarray], texts: Optional[Dict[str, Sequence[str]]] = None
    ) -> List[Row]:
        """What fills each utterance's slots: its speech, and the texts given
        for other slots (e.g. ``{"asr_hyp": [...]}``), tokenized as the
        training prompt reads them."""
        texts = texts or {}
        tok, prompt = self.model.llm.tokenizer, self.model.prompt
        rows = [{SPEECH: s} for s in self.slots(speech)]
        for name, values in texts.items():
            lead = prompt.lead(name) if name in prompt.slots else ""
            for row, text in zip(rows, values):
                row[name] = torch.tensor(tok(lead + text, add_special_tokens=False).input_ids)
        return rows

    def check_input(self, speech: np.ndarray, name: str) -> None:
        """Raises ValueError naming ``name`` for input this model cannot read:
        not a float mono 16 kHz waveform in [-1, 1] (or, for a model trained on
        cached frames, frames of the encoder's width), or not finite."""
        speech = np.asarray(speech)
        frames = isinstance(self.model.encoder, PrecomputedEncoder)
        width = self.model.encoder.output_size() if frames else None
        if speech.ndim == 2 and speech.shape[1] != width:
            expected = "a mono waveform (1-D)" + (f" or frames of width {width}" if frames else "")
            hint = "; a multi-channel waveform? pass one channel" if speech.shape[1] <= 8 else ""
            raise ValueError(f"{name}: shape {tuple(speech.shape)}: expected {expected}{hint}")
        if speech.ndim not in (1, 2) or speech.shape[0] == 0:
            raise ValueError(f"{name}: shape {tuple(speech.shape)}: expected a non-empty mono waveform (1-D)")
        if not np.issubdtype(speech.dtype, np.floating):
            raise ValueError(f"{name}: {speech.dtype} samples; expected floats in [-1, 1] (int16 / 32768)")
        if not np.isfinite(speech).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        peak = float(np.abs(speech).max())
        if speech.ndim == 1 and peak > 2:
            raise ValueError(f"{name}: peak {peak:.0f}; expected a waveform in [-1, 1] (int16-scaled? divide by 32768)")

    @torch.no_grad()
    def slots(self, speech: Sequence[np.ndarray]) -> List[torch.Tensor]:
        """Adapter outputs for waveforms (1-D) or cached encoder frames (2-D)."""
        for i, s in enumerate(speech):
            self.check_input(s, f"utterance {i} of the batch")
        x, lengths = pad_batch([np.asarray(s) for s in speech])
        x, lengths = x.to(self.device), lengths.to(self.device)
        if x.dim() == 2 and isinstance(self.model.encoder, PrecomputedEncoder):
            # Trained on cached frames: encode waveforms with the same encoder.
            x, lengths = self.waveform_encoder(x, lengths)
        return self.model.speech_slots(x, lengths)

    @property
    def device(self) -> torch.device:
        return next(self.model.adapter.parameters()).device

    @property
    def waveform_encoder(self) -> AbsSpeechEncoder:
        """The encoder whose cached frames the model was trained on."""
        if self._waveform_encoder is None:
            source = self.model.encoder.dumped_from
            if source is None:
                raise ValueError("model trained on cached frames of an unknown encoder; "
                                 "pass frames (kaldi_ark) instead of waveforms")
            self._waveform_encoder = build_encoder(source).to(self.device)
        return self._waveform_encoder

    def batch(
        self,
        speech: Sequence[np.ndarray],
        instruction: PromptSpec,
        texts: Optional[Dict[str, Sequence[str]]] = None,
    ) -> List[str]:
        """Responses for a batch of utterances (``texts``: see :meth:`rows`)."""
        prompt = self.model.make_prompt(instruction)
        return self.model.generate(self.rows(speech, texts), prompt, **self.generate_kwargs)

    def __call__(self, speech: np.ndarray, instruction: PromptSpec = "continuation") -> str:
        return self.batch([speech], instruction)[0]

    @torch.no_grad()
    def response_nll(
        self, speech: Sequence[np.ndarray], responses: Sequence[str], instruction: PromptSpec
    ) -> List[Tuple[float, int]]:
        """Summed NLL and token count of each given response (teacher-forced)."""
        prompt = self.model.make_prompt(instruction)
        return response_scores(self.model.llm, self.rows(speech), prompt, responses)


def load_split(
    scp: str, kind: str, keys: Optional[Sequence[str]] = None
) -> Tuple[List[str], List[np.ndarray]]:
    """The utterances of ``scp`` (only ``keys``, if given) and their speech.

    Args:
        scp: ``wav.scp`` (kind ``sound``) or ``feats.scp`` (kind ``kaldi_ark``).
        keys: Only these utterances (a job's split); default all.
    """
    items = read_kv(scp)
    if keys is not None:
        missing = set(keys) - {k for k, _ in items}
        if missing:
            raise ValueError(f"{scp}: no entry for utterance {sorted(missing)[0]}")
        wanted = set(keys)
        items = [kv for kv in items if kv[0] in wanted]
    return [k for k, _ in items], [load_speech(v, kind) for _, v in items]


def respond_to_speech(
    s2r: Speech2Response,
    keys: Sequence[str],
    speech: Sequence[np.ndarray],
    output: Path,
    instruction: PromptSpec,
    batch_size: int,
    references: Optional[Dict[str, str]] = None,
    texts: Optional[Dict[str, Sequence[str]]] = None,
) -> int:
    """Answers ``instruction`` for each utterance into ``output``.

    Args:
        keys, speech: Utterances and their speech (see :func:`load_split`).
        references: Write the NLL of these responses instead of generating.
        texts: Per text slot (e.g. ``asr_hyp``), each utterance's text.

    Returns:
        The number of utterances processed by this call.
    """
    for key, x in zip(keys, speech):
        s2r.check_input(x, f"utterance {key}")
    prompt = s2r.model.make_prompt(instruction)
    return respond(
        s2r.model.llm, prompt, keys, [len(x) for x in speech],
        lambda idx: s2r.rows(
            [speech[i] for i in idx], {name: [v[i] for i in idx] for name, v in (texts or {}).items()}
        ),
        output, batch_size, s2r.generate_kwargs, references,
    )


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train_config", type=Path, required=True)
    parser.add_argument("--model_file", type=Path, help="omit for the untrained adapter")
    parser.add_argument(
        "--data_path_and_name_and_type", required=True,
        help="SCP,speech,TYPE with TYPE sound (wav.scp) or kaldi_ark (feats.scp)",
    )
    parser.add_argument("--key_file", type=Path, help="only these utterances (a split)")
    parser.add_argument(
        "--instruction", default="continuation",
        help="a registered instruction's name (espnet_blsp.llm.prompt.INSTRUCTIONS) or text with <speech>",
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--score_text", type=Path, help="write the NLL of these responses")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seeds the untrained adapter")
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    torch.manual_seed(args.seed)
    scp, _, kind = args.data_path_and_name_and_type.split(",")
    s2r = Speech2Response(
        args.train_config, args.model_file,
        generate_kwargs={"max_new_tokens": args.max_new_tokens, "do_sample": False},
    )
    keys = [k for k, _ in read_kv(args.key_file, allow_empty_value=True)] if args.key_file else None
    refs = dict(read_kv(args.score_text)) if args.score_text else None
    keys, speech = load_split(scp, kind, keys)
    n = respond_to_speech(s2r, keys, speech, args.output, args.instruction, args.batch_size, refs)
    logging.info(f"{args.output}: {n} utterances done")


if __name__ == "__main__":
    main()
