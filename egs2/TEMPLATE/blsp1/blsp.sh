#!/usr/bin/env bash
# BLSP recipe stages, for any corpus with Kaldi-style data dirs (as ESPnet's
# asr.sh). A corpus recipe's run.sh sets the options and calls this script.
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
min() { local a=$1 b=$2; echo $(( a < b ? a : b )); }

# General options
stage=1
stop_stage=100
nj=4                 # parallel jobs for generation, encoder dump and decoding
ngpu=0               # GPUs for training (ESPnet DDP when > 1)
num_threads=1        # torch threads per job
python=python3
dumpdir=dump
expdir=exp
# Data
train_set=
valid_set=
test_sets=
local_data_opts=
min_sec=0.3          # utterances outside [min_sec, max_sec] leave the training sets
max_sec=30
# Models (HF hub names or local checkpoint dirs)
llm=
whisper=
continuation_config=conf/continuation.yaml
train_config=conf/train_blsp.yaml
train_args=
use_encoder_dump=true  # cache the frozen encoder's frames once (stage 4)
encoder_dump_dtype=float32
blsp_tag=
inference_model=valid.loss.ave.pth
inference_batch_size=8
asr_instruction="Transcribe the following speech into text. <speech>"
eval_cascade=true    # Whisper's transcript -> LLM (needs a Whisper with a decoder)
eval_untrained=true  # the randomly initialised adapter, as a floor

help_message=$(cat <<EOF2
Usage: $0 --train_set <set> --valid_set <set> --test_sets "<set> ..." --llm <model> --whisper <model>

Stages:
  1: data preparation (local/data.sh)
  2: format: check data dirs, measure audio, filter by length -> ${dumpdir}/raw
  3: BLSP step 1: the LLM continues each transcript -> ${dumpdir}/raw/<set>/continuation
  4: dump the frozen encoder's frames -> ${dumpdir}/encoder/<set>/feats.scp
  5: shape statistics (ESPnet collect_stats)
  6: train the adapter (ESPnet trainer)
  7: decode test sets: continuation, zero-shot ASR, continuation loss
  8: score and write RESULTS.md

Options (default):
  --stage ($stage) --stop_stage ($stop_stage) --nj ($nj) --ngpu ($ngpu)
  --llm, --whisper: HF hub names or local dirs
  --continuation_config ($continuation_config) --train_config ($train_config)
  --train_args: extra arguments for espnet_blsp.bin.blsp_train
  --use_encoder_dump ($use_encoder_dump) --inference_model ($inference_model)
  --eval_cascade ($eval_cascade) --eval_untrained ($eval_untrained)
EOF2
)

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

for v in train_set valid_set test_sets llm whisper; do
  [ -n "${!v}" ] || { log "--${v} is required"; echo "${help_message}"; exit 1; }
done
[ -n "${blsp_tag}" ] || blsp_tag=$(basename "${train_config}" .yaml)
blsp_exp=${expdir}/blsp_${blsp_tag}
stats_dir=${expdir}/blsp_stats
eval_dir=${blsp_exp}/eval
all_sets="${train_set} ${valid_set} ${test_sets}"

# Runs "<cmd> ... JOB ..." over <nj> parts of <keys>, then merges the outputs
# named <out>.JOB into <out>, sorted. Finished outputs are kept on reruns.
#   run_split <keys> <out> <logname> <command with JOB, IN (the part) and OUT>
run_split() {
  local keys=$1 out=$2 name=$3 cmd=$4
  local dir
  dir=$(dirname "${out}")/split_$(basename "${out}")
  local n
  n=$(min "${nj}" "$(wc -l < "${keys}")")
  mkdir -p "${dir}/log"
  local parts=()
  for j in $(seq "${n}"); do parts+=("${dir}/keys.${j}"); done
  [ -f "${dir}/keys.${n}" ] || utils/split_scp.pl "${keys}" "${parts[@]}"
  cmd=${cmd//IN/${dir}/keys.JOB}
  cmd=${cmd//OUT/${dir}/out.JOB}
  ${decode_cmd} JOB=1:"${n}" "${dir}/log/${name}.JOB.log" "${cmd}"
  for j in $(seq "${n}"); do cat "${dir}/out.${j}"; done | LC_ALL=C sort > "${out}.tmp"
  mv "${out}.tmp" "${out}"
}

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: data preparation"
  local/data.sh ${local_data_opts}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: format data dirs, filter by length"
  for dset in ${all_sets}; do
    opts="--min_sec ${min_sec} --max_sec ${max_sec}"
    case " ${test_sets} " in *" ${dset} "*) opts="--min_sec 0 --max_sec 100000";; esac
    ${python} -m espnet_blsp.bin.format_data --src "data/${dset}" --dst "${dumpdir}/raw/${dset}" ${opts}
  done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: the LLM continues each transcript (BLSP step 1)"
  for dset in ${all_sets}; do
    d=${dumpdir}/raw/${dset}
    if [ -f "${d}/continuation" ]; then log "${d}/continuation exists, skipping"; continue; fi
    run_split "${d}/text" "${d}/continuation.all" generate \
      "${python} -m espnet_blsp.bin.generate_text --llm ${llm} --config ${continuation_config} --num_threads ${num_threads} --text IN --output OUT"
    # Empty responses cannot be targets: keep them out (they are logged).
    awk 'NF > 1' "${d}/continuation.all" > "${d}/continuation.tmp"
    log "${d}: $(wc -l < "${d}/continuation.tmp") of $(wc -l < "${d}/text") continuations usable"
    mv "${d}/continuation.tmp" "${d}/continuation"
  done
fi

if "${use_encoder_dump}"; then
  speech_scp=feats.scp; speech_type=kaldi_ark; speech_root=${dumpdir}/encoder
else
  speech_scp=wav.scp; speech_type=sound; speech_root=${dumpdir}/raw
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ] && "${use_encoder_dump}"; then
  log "Stage 4: encode speech once with the frozen encoder"
  for dset in ${all_sets}; do
    out=${dumpdir}/encoder/${dset}
    [ -f "${out}/feats.scp" ] && { log "${out}/feats.scp exists, skipping"; continue; }
    mkdir -p "${out}"
    # Each job writes its own ark and, last, its feats.scp.
    run_split "${dumpdir}/raw/${dset}/wav.scp" "${out}/feats.scp" dump \
      "${python} -m espnet_blsp.bin.dump_encoder --encoder ${whisper} --dtype ${encoder_dump_dtype} --num_threads ${num_threads} --wav_scp IN --out_dir OUT_dir && cp OUT_dir/feats.scp OUT"
  done
fi

encoder_args="--encoder whisper --encoder_conf model_name_or_path=${whisper}"
if "${use_encoder_dump}"; then
  width=$(${python} -c "import kaldiio,sys; print(next(iter(kaldiio.load_scp(sys.argv[1]).values())).shape[1])" "${dumpdir}/encoder/${train_set}/feats.scp")
  encoder_args="--encoder precomputed --encoder_conf output_size=${width} --encoder_conf dumped_from=${whisper}"
fi
data_args() {  # <train|valid> <set>: targets first, so their keys drive the epoch
  echo "--${1}_data_path_and_name_and_type ${dumpdir}/raw/${2}/continuation,text,text"
  echo "--${1}_data_path_and_name_and_type ${speech_root}/${2}/${speech_scp},speech,${speech_type}"
}

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: shape statistics"
  ${train_cmd} "${stats_dir}/log/stats.log" \
    ${python} -m espnet_blsp.bin.blsp_train --collect_stats true --ngpu 0 \
      --config "${train_config}" ${encoder_args} --llm_conf model_name_or_path="${llm}" \
      $(data_args train "${train_set}") $(data_args valid "${valid_set}") \
      --output_dir "${stats_dir}" ${train_args}
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  log "Stage 6: train the adapter -> ${blsp_exp} (log: ${blsp_exp}/train.log)"
  mkdir -p "${blsp_exp}"
  ${cuda_cmd} --gpu "${ngpu}" "${blsp_exp}/train.log" \
    ${python} -m espnet_blsp.bin.blsp_train --ngpu "${ngpu}" \
      --config "${train_config}" ${encoder_args} --llm_conf model_name_or_path="${llm}" \
      $(data_args train "${train_set}") $(data_args valid "${valid_set}") \
      --train_shape_file "${stats_dir}/train/text_shape" \
      --train_shape_file "${stats_dir}/train/speech_shape" \
      --valid_shape_file "${stats_dir}/valid/text_shape" \
      --valid_shape_file "${stats_dir}/valid/speech_shape" \
      --resume true --output_dir "${blsp_exp}" ${train_args}
fi

# Each system answers the continuation and ASR instructions on a test set and
# scores the Text+LLM continuation (teacher-forced loss).
text_system() {  # <system dir> <transcripts> <set>: the LLM reads text
  local sd=$1 text=$2 ref=${dumpdir}/raw/$3/continuation
  local gen="${python} -m espnet_blsp.bin.generate_text --llm ${llm} --config ${continuation_config} --num_threads ${num_threads} --text IN --output OUT"
  [ -f "${sd}/continuation" ] || run_split "${text}" "${sd}/continuation" continuation "${gen}"
  [ -f "${sd}/asr_text" ] || run_split "${text}" "${sd}/asr_text" asr "${gen} --instruction '${asr_instruction}'"
  [ -f "${sd}/nll" ] || run_split "${text}" "${sd}/nll" nll "${gen} --score_text ${ref}"
}
speech_system() {  # <system dir> <set> [--model_file F]: the LLM hears speech
  local sd=$1 dset=$2; shift 2
  local inf="${python} -m espnet_blsp.bin.blsp_inference --train_config ${blsp_exp}/config.yaml $* --num_threads ${num_threads} --batch_size ${inference_batch_size} --data_path_and_name_and_type ${speech_root}/${dset}/${speech_scp},speech,${speech_type} --key_file IN --output OUT"
  local keys=${dumpdir}/raw/${dset}/continuation
  [ -f "${sd}/continuation" ] || run_split "${keys}" "${sd}/continuation" continuation "${inf}"
  [ -f "${sd}/asr_text" ] || run_split "${keys}" "${sd}/asr_text" asr "${inf} --instruction '${asr_instruction}'"
  [ -f "${sd}/nll" ] || run_split "${keys}" "${sd}/nll" nll "${inf} --score_text ${dumpdir}/raw/${dset}/continuation"
}

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  log "Stage 7: decode test sets"
  for dset in ${test_sets}; do
    d=${dumpdir}/raw/${dset}
    log "${dset}: Text+LLM"
    text_system "${eval_dir}/${dset}/text_llm" "${d}/text" "${dset}"
    if "${eval_cascade}"; then
      log "${dset}: Whisper+LLM cascade"
      sd=${eval_dir}/${dset}/whisper_cascade
      [ -f "${sd}/whisper_text" ] || run_split "${d}/wav.scp" "${sd}/whisper_text" whisper \
        "${python} -m espnet_blsp.bin.whisper_decode --model ${whisper} --wav_scp IN --output OUT"
      text_system "${sd}" "${sd}/whisper_text" "${dset}"
    fi
    if "${eval_untrained}"; then
      log "${dset}: untrained adapter"
      speech_system "${eval_dir}/${dset}/blsp_untrained" "${dset}"
    fi
    log "${dset}: BLSP (${inference_model})"
    speech_system "${eval_dir}/${dset}/blsp" "${dset}" --model_file "${blsp_exp}/${inference_model}"
  done
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  log "Stage 8: scoring"
  for dset in ${test_sets}; do
    for sd in "${eval_dir}/${dset}"/*/; do
      ${python} -m espnet_blsp.bin.score --sys_dir "${sd%/}" \
        --ref_text "${dumpdir}/raw/${dset}/text" --ref_continuation "${dumpdir}/raw/${dset}/continuation"
    done
  done
  {
    echo "# RESULTS"
    echo
    echo "- recipe: egs2/$(basename "$(cd .. && pwd)")/$(basename "$PWD"), $(date '+%Y-%m-%d')"
    echo "- LLM: ${llm}; speech encoder: ${whisper}; config: ${train_config}; model: ${inference_model}"
    echo "- continuation agreement is against the Text+LLM continuation (so Text+LLM is 100 by construction);"
    echo "  WER after Whisper's English normaliser; loss = mean per-token NLL of the Text+LLM continuation."
    echo
    ${python} -m espnet_blsp.bin.score --results "${eval_dir}"
  } > RESULTS.md.tmp
  mv RESULTS.md.tmp RESULTS.md
  cat RESULTS.md
  log "Results: $PWD/RESULTS.md"
fi
log "Successfully finished."
