#!/usr/bin/env bash
# BLSP recipe stages, for any corpus with Kaldi-style data dirs (as ESPnet's
# asr.sh). A corpus recipe's run.sh sets the options and calls this script.
set -euo pipefail

# General options
stage=1
stop_stage=100
nj=4                 # parallel jobs for generation, encoder dump and decoding
ngpu=0               # GPUs for training (ESPnet DDP when > 1)
num_threads=1        # torch threads per parallel job (stages 3, 4, 7)
train_threads=2      # torch threads for CPU training (stage 6)
python=python3
dumpdir=dump
expdir=exp
# Data
datadir=data        # Kaldi data dirs stage 2 reads: stage 1's, or an existing recipe's (e.g. ../asr1/data)
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
variant_configs=     # more training configs (the paper's baselines and variants, e.g.
                     # conf/train_asr_pretrain.yaml): each trains its own exp dir with the
                     # same data and init, and its trained adapter is a row of the tables
response_data=continuation  # dump/raw/<set>/<file> with the training targets (stage 3 writes continuation)
slot_data=           # further text data for prompt slots, e.g. "asr_hyp" (dump/raw/<set>/asr_hyp)
check_instruction=true  # stop if training asks another instruction than stage 3 did
prealign_config=     # if set, stage 6 first pre-aligns the adapter with it (e.g. CTC)
use_encoder_dump=true  # cache the frozen encoder's frames once (stage 4); false: encode on the fly
encoder_dump_dtype=float32  # compute dtype of the dumped encoder (auto: bf16 where native)
encoder_dump_feats_dtype=float32  # stored dtype of the dumped frames: float32, or float16 (half the disk)
blsp_tag=             # experiment dir: ${expdir}/${exp_prefix}_${blsp_tag} (default tag: the train config's name)
exp_prefix=blsp
inference_model=valid.loss.ave.pth
inference_batch_size=16
asr_instruction=transcription  # a name in espnet_blsp.llm.prompt.INSTRUCTIONS, or text with <speech>
eval_config=         # each test set's tasks (ASR, ST, SLU), references and metrics; default: ASR only
eval_cascade=true    # Whisper's transcript -> LLM (needs a Whisper with a decoder)
eval_untrained=true  # the randomly initialised adapter, as a floor
eval_text_llm=true   # the LLM reading the reference transcript, as a ceiling
eval_representation=true  # the LLM's hidden states of speech vs. transcript (the paper's Appendix D)
representation_set=  # ... on this test set (default: the first of --test_sets)
representation_opts="--max_utts 32"  # espnet_blsp.bin.analyze_representation options
skip_packing=true    # stage 9: pack the trained model into one archive (like ESPnet's asr.sh)
pack_models=true     # ... with the local model dirs the config names (false: their paths only)

help_message=$(cat <<EOF2
Usage: $0 --train_set <set> --valid_set <set> --test_sets "<set> ..." --llm <model> --whisper <model>

Stages:
  1: data preparation (local/data.sh) -> ${datadir}/<set>
  2: format: check data dirs, measure audio, filter by length -> ${dumpdir}/raw
  3: BLSP step 1: the LLM continues each transcript -> ${dumpdir}/raw/<set>/continuation
  4: dump the frozen encoder's frames -> ${dumpdir}/encoder/<set>/feats.scp
  5: shape statistics (ESPnet collect_stats)
  6: train the adapter (ESPnet trainer), after an optional pre-alignment; then --variant_configs
  7: decode test sets: continuation, continuation loss, each set's tasks (--eval_config; default ASR);
     the representation analysis (--eval_representation)
  8: score and write RESULTS.md (the variants' adapters as rows of the tables)
  9: pack the trained model (--skip_packing false) -> ${expdir}/<exp>/<exp>_<model>.zip

Options (default):
  --stage ($stage) --stop_stage ($stop_stage) --nj ($nj) --ngpu ($ngpu)
  --datadir ($datadir): from --stage 2, the data dirs of an existing ESPnet recipe, e.g. ../asr1/data
  --llm, --whisper: HF hub names or local dirs
  --continuation_config ($continuation_config) --train_config ($train_config)
  --train_args: extra arguments for espnet_blsp.bin.blsp_train
  --variant_configs: e.g. "conf/train_asr_pretrain.yaml conf/train_blsp_rp.yaml" -> ${expdir}/${exp_prefix}_<name>
  --eval_representation ($eval_representation) --representation_set --representation_opts ($representation_opts)
  --response_data ($response_data) --slot_data ($slot_data) --check_instruction ($check_instruction)
  --prealign_config: a config (e.g. conf/prealign_ctc.yaml) whose model initialises BLSP training
  --use_encoder_dump ($use_encoder_dump) --encoder_dump_dtype ($encoder_dump_dtype)
  --encoder_dump_feats_dtype ($encoder_dump_feats_dtype) --inference_model ($inference_model)
  --eval_cascade ($eval_cascade) --eval_untrained ($eval_untrained) --eval_text_llm ($eval_text_llm)
  --eval_config: conf/eval_tasks.yaml-style tasks per test set (espnet_blsp/evaluation/tasks.py)
EOF2
)

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh
. "$(dirname "$(readlink -f "$0")")/scripts/lib.sh"

for v in train_set valid_set test_sets llm whisper; do
  [ -n "${!v}" ] || { log "--${v} is required"; echo "${help_message}"; exit 1; }
done
[ -n "${blsp_tag}" ] || blsp_tag=$(basename "${train_config}" .yaml)
blsp_exp=${expdir}/${exp_prefix}_${blsp_tag}
# Dumps (and their shape statistics) differ by the encoder layers the config taps.
encoder_tag=$(encoder_tag_of "${train_config}")
stats_dir=${expdir}/blsp_stats${encoder_tag}
eval_dir=${blsp_exp}/eval
all_sets="${train_set} ${valid_set} ${test_sets}"
variant_exp() { echo "${expdir}/${exp_prefix}_$(basename "$1" .yaml)"; }
[ -n "${representation_set}" ] || representation_set=${test_sets%% *}

if "${check_instruction}" && [ ${stage} -le 6 ] && [ ${stop_stage} -ge 3 ]; then
  # The targets of stage 3 answer the continuation config's instruction: training must ask the same.
  ${python} -m espnet_blsp.bin.check_instruction --generation_config "${continuation_config}" \
    --train_config "${train_config}" ${prealign_config:+"${prealign_config}"} ${variant_configs}
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: data preparation"
  local/data.sh ${local_data_opts}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: format data dirs, filter by length"
  for dset in ${all_sets}; do
    opts="--min_sec ${min_sec} --max_sec ${max_sec}"
    # Test sets keep every utterance Whisper can encode (>= 25 ms; see ${dumpdir}/raw/<set>/dropped).
    case " ${test_sets} " in *" ${dset} "*) opts="--min_sec 0 --max_sec 100000";; esac
    ${python} -m espnet_blsp.bin.format_data --src "${datadir}/${dset}" --dst "${dumpdir}/raw/${dset}" --nj "${nj}" ${opts}
  done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: the LLM continues each transcript (BLSP step 1)"
  for dset in ${all_sets}; do
    llm_targets "${dumpdir}/raw/${dset}" text continuation "${continuation_config}"
  done
fi

if "${use_encoder_dump}"; then
  speech_scp=feats.scp; speech_type=kaldi_ark; speech_root=${dumpdir}/encoder${encoder_tag}
  speech_shape=speech_shape
else
  speech_scp=wav.scp; speech_type=sound; speech_root=${dumpdir}/raw
  speech_shape=speech_shape.frames  # stage 6 writes it: batch_bins counts encoder frames either way
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ] && "${use_encoder_dump}"; then
  log "Stage 4: encode speech once with the frozen encoder"
  # What a set's dump is made from: redone when the audio list, the encoder
  # (model, layers) or a dtype changes.
  dump_inputs() {
    what=("${dumpdir}/raw/$1/wav.scp" "${dumpdir}/raw/$1/utt2num_samples" "${whisper}" \
      "$(encoder_spec_of "${train_config}")" "${encoder_dump_dtype}")
    # float32 dumps predate the option: their markers stay valid.
    [ "${encoder_dump_feats_dtype}" = float32 ] || what+=("feats_dtype=${encoder_dump_feats_dtype}")
  }
  todo=()
  for dset in ${all_sets}; do
    case " ${todo[*]} " in *" ${dset} "*) continue;; esac
    dump_inputs "${dset}"
    if up_to_date "${speech_root}/${dset}/.done" "${what[@]}"; then log "${speech_root}/${dset}/feats.scp done, skipping"; continue; fi
    todo+=("${dset}")
  done
  if [ ${#todo[@]} -gt 0 ]; then
    # The size of what is left to dump, before any job: stops if the disk cannot hold it.
    raw_dirs=()
    for dset in "${todo[@]}"; do raw_dirs+=("${dumpdir}/raw/${dset}"); done
    ${python} -m espnet_blsp.utils.dump_size --config "${train_config}" --model "${whisper}" \
      --feats_dtype "${encoder_dump_feats_dtype}" --out_root "${speech_root}" "${raw_dirs[@]}" \
      || { log "Stage 4 stopped before writing anything (see above)"; exit 1; }
  fi
  for dset in "${todo[@]}"; do
    out=${speech_root}/${dset}
    dump_inputs "${dset}"
    rm -f "${out}/.done"
    mkdir -p "${out}"
    # Each job writes its own ark and, last, its feats.scp.
    # The training config says which encoder (and which of its layers) to dump.
    run_split "${dumpdir}/raw/${dset}/wav.scp" "${out}" dump \
      "${python} -m espnet_blsp.bin.dump_encoder --config ${train_config} --encoder_conf model_name_or_path=${whisper} --encoder_conf dtype=${encoder_dump_dtype} --feats_dtype ${encoder_dump_feats_dtype} --num_threads ${num_threads} --wav_scp @IN@ --out_dir @OUT@" \
      feats.scp
    cp "${out}/split_dump/out.1/encoder.yaml" "${out}/encoder.yaml"
    mark_done "${out}/.done" "${what[@]}"
  done
fi

encoder_args() {  # the encoder for training: the config's, or its cached frames
  if "${use_encoder_dump}"; then
    echo "--encoder precomputed --encoder_conf dumped_from=${speech_root}/${train_set}/encoder.yaml"
  else
    echo "--encoder_conf model_name_or_path=${whisper}"
  fi
}
data_args() {  # <train|valid> <set>: targets first, so their keys drive the epoch
  echo "--${1}_data_path_and_name_and_type ${dumpdir}/raw/${2}/${response_data},response,text"
  echo "--${1}_data_path_and_name_and_type ${speech_root}/${2}/${speech_scp},speech,${speech_type}"
  # The transcript: a target of transcription tasks, and for the CTC and KD losses.
  echo "--${1}_data_path_and_name_and_type ${dumpdir}/raw/${2}/text,transcript,text"
  for name in ${slot_data}; do
    echo "--${1}_data_path_and_name_and_type ${dumpdir}/raw/${2}/${name},${name},text"
  done
}

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: shape statistics"
  ${train_cmd} "${stats_dir}/log/stats.log" \
    ${python} -m espnet_blsp.bin.blsp_train --collect_stats true --ngpu 0 \
      --config "${train_config}" $(encoder_args) --llm_conf model_name_or_path="${llm}" \
      $(data_args train "${train_set}") $(data_args valid "${valid_set}") \
      --output_dir "${stats_dir}" ${train_args}
fi

# Trains a model with ESPnet's trainer (resuming an unfinished run), and
# writes the wall-clock seconds of the run that finished it to train_seconds.
# An exp dir trained on other data or models stops the stage (a changed
# config, e.g. more epochs, resumes).
#   train <config> <exp dir> [blsp_train args]...
train() {
  local config=$1 dir=$2
  shift 2
  local what=($(encoder_args) "${llm}" $(data_args train "${train_set}") $(data_args valid "${valid_set}") "$@")
  if [ -e "${dir}/checkpoint.pth" ] && [ ! -f "${dir}/.trained_on" ]; then
    log "${dir}: no record of its data (made before records were kept); taking it as made from the current data"
  elif [ -f "${dir}/.trained_on" ] && ! up_to_date "${dir}/.trained_on" "${what[@]}"; then
    log "${dir} was trained on other data or models (above). To train anew: rm -r ${dir}," \
      "or use another --blsp_tag; to keep it as it is, run from stage 7."
    exit 1
  fi
  mkdir -p "${dir}"
  mark_done "${dir}/.trained_on" "${what[@]}"
  keep_log "${dir}/train.log"  # a crashed run's log stays, as train.log.N
  local start=${SECONDS}
  local ddp_args=""  # ESPnet's DDP: one process per GPU on this node
  [ "${ngpu}" -gt 1 ] && ddp_args="--multiprocessing_distributed true"
  OMP_NUM_THREADS=${train_threads} ${cuda_cmd} --gpu "${ngpu}" --num_threads "${train_threads}" "${dir}/train.log" \
    ${python} -m espnet_blsp.bin.blsp_train --ngpu "${ngpu}" \
      --config "${config}" $(encoder_args) --llm_conf model_name_or_path="${llm}" \
      $(data_args train "${train_set}") $(data_args valid "${valid_set}") \
      --train_shape_file "${stats_dir}/train/response_shape" \
      --train_shape_file "${stats_dir}/train/${speech_shape}" \
      --valid_shape_file "${stats_dir}/valid/response_shape" \
      --valid_shape_file "${stats_dir}/valid/${speech_shape}" \
      --resume true --output_dir "${dir}" ${ddp_args} "$@" ${train_args}
  [ -f "${dir}/train_seconds" ] || echo $(( SECONDS - start )) > "${dir}/train_seconds"
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  if ! "${use_encoder_dump}"; then
    # Stage 5 measured waveforms (samples); the encoder turns them into frames.
    for part in train valid; do
      ${python} -c 'import sys; from pathlib import Path; from espnet_blsp.utils.dump_size import frames_shape; frames_shape(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])' \
        "${stats_dir}/${part}/speech_shape" "${stats_dir}/${part}/speech_shape.frames" "${train_config}" "${whisper}"
    done
  fi
  init_args=()
  if [ -n "${prealign_config}" ]; then
    prealign_exp=${expdir}/blsp_$(basename "${prealign_config}" .yaml)
    log "Stage 6: pre-align the adapter -> ${prealign_exp} (log: ${prealign_exp}/train.log)"
    train "${prealign_config}" "${prealign_exp}"
    init_args=(--init_param "${prealign_exp}/valid.loss.best.pth")
  fi
  log "Stage 6: train the adapter -> ${blsp_exp} (log: ${blsp_exp}/train.log)"
  train "${train_config}" "${blsp_exp}" "${init_args[@]}"
  for config in ${variant_configs}; do
    log "Stage 6: train the variant ${config} -> $(variant_exp "${config}") (log: $(variant_exp "${config}")/train.log)"
    train "${config}" "$(variant_exp "${config}")" "${init_args[@]}"
  done
fi

# One system on one test set: its continuations, zero-shot transcripts and
# the loss of the Text+LLM continuation given its own input and another
# utterance's (espnet_blsp.bin.evaluate). Redone when any input or the model changes.
#   evaluate <system dir> <set> <how the LLM gets its input>
evaluate() {
  local sd=$1 dset=$2 input=$3
  local ref=${dumpdir}/raw/${dset}/continuation
  local instruction
  printf -v instruction '%q' "${asr_instruction}"  # run.pl runs the command with bash -c
  local cmd="${python} -m espnet_blsp.bin.evaluate --keys @IN@ --out_dir @OUT@ --ref_continuation ${ref} --asr_instruction ${instruction} --config ${continuation_config} ${eval_config:+--eval_config ${eval_config}} --test_set ${dset} --num_threads ${num_threads} ${input}"
  # shellcheck disable=SC2086  # the command's words, each file in it fingerprinted
  if up_to_date "${sd}/.done" ${cmd}; then log "${sd}: done, skipping"; return; fi
  rm -f "${sd}/.done"
  mkdir -p "${sd}"
  # shellcheck disable=SC2046  # the task answers' file names
  run_split "${ref}" "${sd}" eval "${cmd}" continuation nll nll_other slot_length \
    $(${python} -m espnet_blsp.evaluation.tasks ${eval_config:+--config "${eval_config}"} --set "${dset}")
  # shellcheck disable=SC2086
  mark_done "${sd}/.done" ${cmd}
}

# How alike the LLM's hidden states of speech and of its transcript are, for
# one system, under several instructions (espnet_blsp.bin.analyze_representation).
#   analyze <exp dir> <system name> [--model_file <file>]
analyze() {
  local exp=$1 name=$2
  shift 2
  local out=${blsp_exp}/representation/${representation_set}/${name}
  local cmd="${python} -m espnet_blsp.bin.analyze_representation --train_config ${exp}/config.yaml $* --speech ${speech_root}/${representation_set}/${speech_scp},${speech_type} --text ${dumpdir}/raw/${representation_set}/text --title ${name} --num_threads ${num_threads} --out_dir ${out} ${representation_opts}"
  # shellcheck disable=SC2086  # the command's words, each file in it fingerprinted
  if up_to_date "${out}/.done" ${cmd}; then log "${out}: done, skipping"; return; fi
  rm -f "${out}/.done"
  log "${representation_set}: representation analysis of ${name} -> ${out}/heatmap.png"
  ${decode_cmd} "${out}/analyze.log" ${cmd}
  # shellcheck disable=SC2086
  mark_done "${out}/.done" ${cmd}
}

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  log "Stage 7: decode test sets"
  for dset in ${test_sets}; do
    d=${dumpdir}/raw/${dset}
    text_input="--llm ${llm}"
    speech_of="--batch_size ${inference_batch_size} --speech ${speech_root}/${dset}/${speech_scp},${speech_type}"
    speech_input="--train_config ${blsp_exp}/config.yaml ${speech_of}"
    if "${eval_text_llm}"; then
      log "${dset}: Text+LLM"
      # Its continuation is the reference itself (stage 3): not generated again.
      evaluate "${eval_dir}/${dset}/text_llm" "${dset}" "${text_input} --text ${d}/text --continuation_from ${d}/continuation"
    fi
    if "${eval_cascade}"; then
      log "${dset}: Whisper+LLM cascade"
      sd=${eval_dir}/${dset}/whisper_cascade
      asr_transcripts "${d}/wav.scp" "${sd}" whisper_text
      evaluate "${sd}" "${dset}" "${text_input} --text ${sd}/whisper_text"
    fi
    if "${eval_untrained}"; then
      log "${dset}: untrained adapter"
      evaluate "${eval_dir}/${dset}/blsp_untrained" "${dset}" "${speech_input}"
    fi
    log "${dset}: BLSP (${inference_model})"
    evaluate "${eval_dir}/${dset}/blsp" "${dset}" "${speech_input} --model_file ${blsp_exp}/${inference_model}"
    for config in ${variant_configs}; do
      vexp=$(variant_exp "${config}")
      log "${dset}: ${vexp} (${inference_model})"
      evaluate "${vexp}/eval/${dset}/blsp" "${dset}" \
        "--train_config ${vexp}/config.yaml ${speech_of} --model_file ${vexp}/${inference_model}"
    done
  done
  if "${eval_representation}"; then
    if "${eval_untrained}"; then analyze "${blsp_exp}" blsp_untrained; fi
    analyze "${blsp_exp}" blsp --model_file "${blsp_exp}/${inference_model}"
    for config in ${variant_configs}; do
      vexp=$(variant_exp "${config}")
      analyze "${vexp}" "$(basename "${config}" .yaml)" --model_file "${vexp}/${inference_model}"
    done
  fi
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  log "Stage 8: scoring"
  variant_evals=()
  for config in ${variant_configs}; do variant_evals+=("$(variant_exp "${config}")/eval"); done
  for dset in ${test_sets}; do
    for sd in "${eval_dir}/${dset}"/*/ "${variant_evals[@]/%//${dset}/blsp/}"; do
      [ -f "${sd}/.done" ] || continue
      ${python} -m espnet_blsp.bin.score --sys_dir "${sd%/}" \
        --ref_text "${dumpdir}/raw/${dset}/text" --ref_continuation "${dumpdir}/raw/${dset}/continuation" \
        ${eval_config:+--eval_config "${eval_config}"} --test_set "${dset}"
    done
  done
  {
    echo "# RESULTS"
    echo
    echo "- recipe: egs2/$(basename "$(cd .. && pwd)")/$(basename "$PWD"), $(date '+%Y-%m-%d')"
    echo "- LLM: ${llm}; speech encoder: ${whisper}; config: ${train_config}; model: ${inference_model}"
    [ -z "${prealign_config}" ] || echo "- the adapter started from its pre-alignment with ${prealign_config}"
    [ -z "${variant_configs}" ] || echo "- baselines and variants trained alike (same data, start and model): ${variant_configs}"
    echo "- continuation agreement is against the Text+LLM continuation (so Text+LLM is 100 by construction);"
    echo "  WER after Whisper's English normaliser; loss = mean per-token NLL of the Text+LLM continuation;"
    echo "  loss drop = that loss given another utterance's input (the next one in its decoding job) minus"
    echo "  the loss given its own: what the LLM takes from the speech (or text) it gets."
    [ -z "${eval_config}" ] || echo "- tasks, instructions, references and metrics of each test set: ${eval_config}"
    echo
    ${python} -m espnet_blsp.bin.score --results "${eval_dir}" ${variant_evals[@]:+--variants "${variant_evals[@]}"} \
      --representation "${blsp_exp}/representation"
  } > RESULTS.md.tmp
  mv RESULTS.md.tmp RESULTS.md
  cat RESULTS.md
  log "Results: $PWD/RESULTS.md"
fi
if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ] && ! "${skip_packing}"; then
  packed=${blsp_exp}/$(basename "${blsp_exp}")_${inference_model%.pth}.zip
  log "Stage 9: pack ${blsp_exp}/${inference_model} -> ${packed}"
  results=(); [ -f RESULTS.md ] && results=(--option RESULTS.md)
  ${python} -m espnet_blsp.bin.pack --train_config "${blsp_exp}/config.yaml" \
    --model_file "${blsp_exp}/${inference_model}" --with_models "${pack_models}" \
    --outpath "${packed}" "${results[@]}"
  log "Load it anywhere: Speech2Response.from_pretrained(\"${packed}\")"
fi
log "Successfully finished."
