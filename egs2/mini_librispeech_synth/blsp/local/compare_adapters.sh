#!/usr/bin/env bash
# Adapter comparison on the demo: trains and decodes BLSP once per config in
# conf/adapters/ (the paper's recipe, same optimizer, batches and epochs; only
# the adapter differs), then writes RESULTS_adapters.md. Run after ./run.sh
# (it reuses its data, step-1 continuations and models). Resumable.
#   local/compare_adapters.sh [--train_args "--max_epoch 1"] [conf/adapters/X.yaml ...]
set -euo pipefail
train_args=
if [ "${1:-}" = --train_args ]; then train_args=$2; shift 2; fi
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(conf/adapters/*.yaml)
. ./path.sh

exps=()
for conf in "${configs[@]}"; do
  tag=adapters_$(basename "${conf}" .yaml)
  # Stages 4-7: dumps for the layers it taps, stats, training, decoding; no pre-alignment.
  ./run.sh --stage 4 --stop_stage 7 --train_config "${conf}" --blsp_tag "${tag}" --prealign_config "" \
    --eval_text_llm false --eval_cascade false --eval_untrained false --train_args "${train_args}"
  sd=exp/blsp_${tag}/eval/test_synth/blsp
  python -m espnet_blsp.bin.score --sys_dir "${sd}" \
    --ref_text dump/raw/test_synth/text --ref_continuation dump/raw/test_synth/continuation
  exps+=("exp/blsp_${tag}")
done
{
  echo "# Adapter comparison (demo, test_synth)"
  echo
  echo "- recipe: egs2/mini_librispeech_synth/blsp, local/compare_adapters.sh, $(date '+%Y-%m-%d')"
  echo "- each row: conf/adapters/<row>.yaml, the paper's recipe (random init, no CTC pre-alignment or"
  echo "  compression), lr 3e-4, 2 epochs of ~4-utterance batches, 2 CPU threads; columns as in RESULTS.md,"
  echo "  plus what trains, the training's wall-clock seconds and the LLM positions the speech fills."
  [ -z "${train_args}" ] || echo "- training overridden for every row: ${train_args}"
  echo
  python -m espnet_blsp.bin.score --compare "${exps[@]}" --set test_synth
} > RESULTS_adapters.md.tmp
mv RESULTS_adapters.md.tmp RESULTS_adapters.md
cat RESULTS_adapters.md
