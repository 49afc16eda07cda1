"""Recipe stage 7: one system's answers on (a split of) a test set.

Writes ``<out_dir>/continuation`` (the continuation instruction),
``<out_dir>/<task>_text`` for each task ``--eval_config`` gives the test set
(``asr_text`` alone by default: the ``--asr_instruction``), ``<out_dir>/nll``
(the teacher-forced loss of the Text+LLM continuation) and
``<out_dir>/nll_other`` (the same loss given the input of the next
utterance in ``--keys``, cyclically: what the input is worth) and
``<out_dir>/slot_length`` (how many LLM positions the input fills), loading
the model once. The LLM either reads text (``--text``: the reference transcript, or a
Whisper transcript for the cascade) or hears speech (``--speech`` with a
trained or untrained BLSP model)::

    python -m espnet_blsp.bin.evaluate --out_dir exp/.../eval/test/blsp \\
        --ref_continuation dump/raw/test/continuation --keys dump/raw/test/continuation \\
        --train_config exp/blsp/config.yaml --model_file exp/blsp/valid.loss.ave.pth \\
        --speech dump/encoder/test/feats.scp,kaldi_ark

``--ask describe_seed`` puts another method's question to a model, inside
its own prompt, for the continuation and its loss (BLSP's adapter asked
DeSTA2's "What can you hear from the audio?" against the description).

Each output resumes where it stopped; outputs already complete are skipped.
Outputs made by another model, input or setting are deleted, not resumed.
"""

import argparse
from pathlib import Path
from typing import List, Optional

import torch

from espnet_blsp.bin.blsp_inference import (
    Speech2Response,
    load_split,
    respond_to_speech,
)
from espnet_blsp.bin.generate_text import generate_file, load_conf, read_texts
from espnet_blsp.evaluation.tasks import load_tasks
from espnet_blsp.llm.batch import text_rows
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.llm.prompt import SPEECH, ask_instruction, build_prompt, resolve_instruction
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.kaldi_dir import read_kv, read_values, write_kv
from espnet_blsp.utils.stamp import beside, reset_if_stale, stamp_of

OUTPUTS = ("continuation", "slot_length", "nll", "nll_other", ".input_text", ".other_continuation")


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--keys", type=Path, required=True, help="the utterances (uttid first)")
    parser.add_argument("--ref_continuation", type=Path, required=True)
    parser.add_argument("--asr_instruction", default="transcription", help="a registered name or text")
    parser.add_argument("--eval_config", type=Path, help="the tasks of each test set (evaluation/tasks.py)")
    parser.add_argument("--test_set", default="", help="the test set's name in --eval_config")
    parser.add_argument(
        "--config", type=Path,
        help="generation config (generate_text's YAML); decoding settings apply to both kinds",
    )
    text = parser.add_argument_group("the LLM reads text")
    text.add_argument("--text", type=Path, help="uttid -> transcript")
    text.add_argument("--llm", help="HF causal LM")
    text.add_argument(
        "--continuation_from", type=Path,
        help="take the continuations from here instead of generating them (Text+LLM: "
        "the reference made in stage 3 by the same LLM, prompt and decoding)",
    )
    speech = parser.add_argument_group("the LLM hears speech")
    speech.add_argument("--speech", help="SCP,TYPE: wav.scp,sound or feats.scp,kaldi_ark")
    speech.add_argument("--train_config", type=Path)
    speech.add_argument("--model_file", type=Path, help="omit for the untrained adapter")
    speech.add_argument("--asr_hyp", type=Path, help="uttid -> ASR hypothesis, for an <asr_hyp> slot (DeSTA2)")
    speech.add_argument("--batch_size", type=int, default=8)
    speech.add_argument("--seed", type=int, default=0, help="seeds the untrained adapter")
    speech.add_argument(
        "--ask", help="a one-turn instruction (name or text) asked in the model's own prompt for the continuation "
        "and its loss, instead of the trained one: another method's task (BLSP's model describing, describe_seed)",
    )
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    if (args.text is None) == (args.speech is None):
        parser.error("give exactly one of --text and --speech")
    keys = [k for k, _ in read_kv(args.keys, allow_empty_value=True)]
    args.out_dir.mkdir(parents=True, exist_ok=True)

    conf = load_conf(args.config, {})
    tasks = load_tasks(args.eval_config, args.test_set)
    settings = {**vars(args), "config": None, "conf": conf}
    # A task's answers depend on its instruction too; adding a task redoes nothing else.
    ignore = ("out_dir", "num_threads", "asr_instruction", "eval_config", "test_set")
    reset_if_stale(
        args.out_dir / ".evaluate.stamp", stamp_of(settings, ignore=ignore),
        [args.out_dir / name for name in OUTPUTS],
    )
    if args.text:
        llm = HFCausalLM(args.llm, dtype=conf["dtype"])
        wanted = set(keys)
        subset = args.out_dir / ".input_text"
        write_kv(subset, [kv for kv in read_kv(args.text, allow_empty_value=True) if kv[0] in wanted])
        instruction = conf["instruction"]

        def run(output: Path, task_instruction: str, refs: Optional[Path] = None) -> None:
            generate_file(llm, subset, output, {**conf, "instruction": task_instruction}, refs)

        def slot_lengths() -> List[int]:
            prompt = build_prompt(llm.tokenizer, instruction, conf["use_chat_template"])
            texts = dict(zip(*read_texts(subset, conf)))
            return [row[SPEECH].numel() for row in text_rows(llm, [texts[k] for k in keys], prompt)]
    else:
        torch.manual_seed(args.seed)
        s2r = Speech2Response(args.train_config, args.model_file, generate_kwargs=conf["generate"])
        scp, kind = args.speech.split(",")
        keys, speech = load_split(scp, kind, keys)  # once, for all three outputs
        # The instruction the responses were trained with; a model trained on
        # transcripts only (ASR pretraining) is asked the continuation config's.
        trained = [t.spec for t in s2r.model.tasks if t.target == "response"]
        instruction = trained[0] if trained else conf["instruction"]
        if args.ask:
            instruction = ask_instruction(instruction, args.ask)
        slot_texts = None
        if args.asr_hyp:
            slot_texts = {"asr_hyp": list(read_values(args.asr_hyp, keys).values())}

        def run(output: Path, task_instruction: str, refs: Optional[Path] = None) -> None:
            references = dict(read_kv(refs)) if refs else None
            respond_to_speech(
                s2r, keys, speech, output, task_instruction, args.batch_size, references, slot_texts
            )

        def slot_lengths() -> List[int]:
            return [s.size(0) for i in range(0, len(speech), args.batch_size)
                    for s in s2r.slots(speech[i : i + args.batch_size])]

    # A task's prompt may be asked inside the system's own (EvalTask.ask).
    instructions = {t.output: t.spec(instruction, args.asr_instruction) for t in tasks}
    for output, spec in instructions.items():
        task_settings = {**settings, "instruction": str(resolve_instruction(spec))}
        reset_if_stale(beside(args.out_dir / output), stamp_of(task_settings, ignore=ignore), [args.out_dir / output])
    if args.continuation_from:
        given = dict(read_kv(args.continuation_from))
        write_kv(args.out_dir / "continuation", [(k, given[k]) for k in keys])
    else:
        run(args.out_dir / "continuation", instruction)
    for output, task_instruction in instructions.items():
        run(args.out_dir / output, task_instruction)
    if not (args.out_dir / "slot_length").exists():
        write_kv(args.out_dir / "slot_length", [(k, str(n)) for k, n in zip(keys, slot_lengths())])
    run(args.out_dir / "nll", instruction, args.ref_continuation)
    # Each input now meets the next utterance's continuation (same texts, same tokens).
    refs = dict(read_kv(args.ref_continuation))
    others = args.out_dir / ".other_continuation"
    write_kv(others, [(k, refs[nxt]) for k, nxt in zip(keys, keys[1:] + keys[:1]) if nxt in refs])
    run(args.out_dir / "nll_other", instruction, others)


if __name__ == "__main__":
    main()
