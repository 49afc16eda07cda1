#!/usr/bin/env bash
# DeSTA2 recipe stages (arXiv 2409.20007), for any corpus whose Kaldi data
# dirs have paralinguistic side files (utt2gender, utt2accent, utt2snr, ...).
# Formatting, the encoder dump, statistics and training are blsp.sh's stages,
# run with DeSTA2's targets and its <asr_hyp> slot.
set -euo pipefail

# General options
stage=1
stop_stage=100
nj=4                 # parallel jobs for generation, transcription and decoding
ngpu=0
num_threads=1
train_threads=2
python=python3
dumpdir=dump
expdir=exp
# Data
datadir=data        # Kaldi data dirs stage 2 reads: stage 1's, or an existing recipe's (e.g. ../asr1/data)
train_set=
valid_set=
test_sets=
local_data_opts=
min_sec=0.3
max_sec=30
seed_attributes=     # make_seed --attributes (default: every attribute the data dir has)
# Models
llm=
whisper=
describe_config=conf/describe.yaml  # step 1: the LLM describes each seed transcript
fix_targets=false    # training and validation descriptions name each labelled attribute's true value
                     # (bin/fix_descriptions: for small LLMs that misread the seed; not DeSTA2's)
continuation_config= # BLSP's step 1 (e.g. ../blsp/conf/continuation.yaml): each test set's `continuation`,
                     # the LLM continuing the transcript: the reference of a continuation task
eval_config=         # each test set's tasks beside the description (evaluation/tasks.py; default: ASR),
                     # e.g. continuation writing asked in each system's own prompt
train_config=conf/train_desta2.yaml
train_args=
variant_configs=     # more training configs, each trained alike and a row of the tables
                     # (e.g. "conf/train_desta2_3ep.yaml conf/train_desta2_no_hyp.yaml")
encoder_dump_dtype=float32        # compute dtype of the dumped encoder (auto: bf16 where native)
encoder_dump_feats_dtype=float32  # stored dtype of the dumped frames: float32, or float16 (half the disk)
desta2_tag=
inference_model=valid.loss.ave.pth
inference_batch_size=16
asr_instruction=transcription
blsp_exp=            # a trained BLSP experiment to evaluate on the same questions (optional)
eval_text_llm=true   # the LLM reading the seed: the upper bound (its descriptions are the references)
eval_cascade=true    # the LLM reading only Whisper's transcript: what the words alone give
eval_untrained=true  # the untrained adapter: the floor
eval_qa=true         # the closed-set questions (stages 6-7; several times the description task's cost)
eval_probe=true      # the description probes (stages 6-7): the attributes asked inside the trained answer

help_message=$(cat <<EOF2
Usage: $0 --train_set <set> --valid_set <set> --test_sets "<set> ..." --llm <model> --whisper <model>

Stages:
  1: data preparation (local/data.sh), with paralinguistic side files
  2: format: check data dirs, measure audio, filter by length -> ${dumpdir}/raw (blsp.sh stage 2)
  3: seed transcripts, and the LLM's description of each -> ${dumpdir}/raw/<set>/{seed,description}
     (with --fix_targets, the training sets' LLM descriptions are kept as description_llm);
     with --continuation_config, its continuation of each test transcript -> .../continuation
  4: Whisper's transcripts -> ${dumpdir}/raw/<set>/asr_hyp
  5: encoder dump, statistics and training on the descriptions (blsp.sh stages 4-6)
  6: closed-set questions per attribute -> ${dumpdir}/qa/<set>/questions.jsonl,
     description probes -> ${dumpdir}/qa/<set>/probes.jsonl
  7: decode test sets: descriptions, zero-shot ASR, description loss, questions, probes
  8: score and write RESULTS.md

Options (default):
  --stage ($stage) --stop_stage ($stop_stage) --nj ($nj) --ngpu ($ngpu)
  --datadir ($datadir): from --stage 2, the data dirs of an existing ESPnet recipe (side files for the seeds)
  --describe_config ($describe_config) --fix_targets ($fix_targets) --train_config ($train_config)
  --continuation_config ($continuation_config) --eval_config ($eval_config)
  --seed_attributes ($seed_attributes) --blsp_exp ($blsp_exp) --eval_qa ($eval_qa) --eval_probe ($eval_probe)
  --variant_configs: e.g. "conf/train_desta2_3ep.yaml" -> ${expdir}/desta2_<name>, a row named <name>
  --encoder_dump_dtype ($encoder_dump_dtype) --encoder_dump_feats_dtype ($encoder_dump_feats_dtype)
EOF2
)

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh
. "$(dirname "$(readlink -f "$0")")/scripts/lib.sh"

for v in train_set valid_set test_sets llm whisper; do
  [ -n "${!v}" ] || { log "--${v} is required"; echo "${help_message}"; exit 1; }
done
[ -n "${desta2_tag}" ] || desta2_tag=$(basename "${train_config}" .yaml)
desta2_exp=${expdir}/desta2_${desta2_tag}
eval_dir=${desta2_exp}/eval
variant_exp() { echo "${expdir}/desta2_$(basename "$1" .yaml)"; }  # blsp.sh trains a variant there
all_sets="${train_set} ${valid_set} ${test_sets}"

# blsp.sh with this recipe's data, models and DeSTA2's targets and slot.
#   blsp <stage> <stop_stage>
blsp() {
  ./blsp.sh --stage "$1" --stop_stage "$2" --nj "${nj}" --ngpu "${ngpu}" \
    --num_threads "${num_threads}" --train_threads "${train_threads}" --python "${python}" \
    --dumpdir "${dumpdir}" --expdir "${expdir}" --datadir "${datadir}" \
    --train_set "${train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}" \
    --min_sec "${min_sec}" --max_sec "${max_sec}" --llm "${llm}" --whisper "${whisper}" \
    --train_config "${train_config}" --train_args "${train_args}" --variant_configs "${variant_configs}" \
    --encoder_dump_dtype "${encoder_dump_dtype}" --encoder_dump_feats_dtype "${encoder_dump_feats_dtype}" \
    --response_data description --slot_data asr_hyp --check_instruction false \
    --exp_prefix desta2 --blsp_tag "${desta2_tag}"
}

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: data preparation"
  local/data.sh ${local_data_opts}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: format data dirs"
  blsp 2 2
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: seed transcripts, and the LLM's answer to \"What can you hear from the audio?\" about each"
  for dset in ${all_sets}; do
    d=${dumpdir}/raw/${dset}
    ${python} -m espnet_blsp.bin.make_seed --data_dir "${d}" --output "${d}/seed" \
      ${seed_attributes:+--attributes "${seed_attributes}"}
    if "${fix_targets}" && [[ " ${test_sets} " != *" ${dset} "* ]]; then
      llm_targets "${d}" seed description_llm "${describe_config}"
      rm -f "${d}/.description.done"  # description is no longer the LLM's own
      ${python} -m espnet_blsp.bin.fix_descriptions --data_dir "${d}" --input "${d}/description_llm" --output "${d}/description"
    else
      llm_targets "${d}" seed description "${describe_config}"
    fi
  done
  if [ -n "${continuation_config}" ]; then
    for dset in ${test_sets}; do llm_targets "${dumpdir}/raw/${dset}" text continuation "${continuation_config}"; done
  fi
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: Whisper's transcripts of every set (DeSTA2 reads them after the speech)"
  for dset in ${all_sets}; do
    asr_transcripts "${dumpdir}/raw/${dset}/wav.scp" "${dumpdir}/raw/${dset}" asr_hyp
  done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: encoder dump, statistics, training -> ${desta2_exp}"
  blsp 4 6
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  log "Stage 6: closed-set questions and description probes"
  for dset in ${test_sets}; do
    d=${dumpdir}/raw/${dset}
    if "${eval_qa}"; then
      ${python} -m espnet_blsp.bin.make_qa --data_dir "${d}" --output "${dumpdir}/qa/${dset}/questions.jsonl"
    fi
    if "${eval_probe}"; then
      ${python} -m espnet_blsp.bin.make_probe --data_dir "${d}" --reference "${d}/description" \
        --output "${dumpdir}/qa/${dset}/probes.jsonl"
    fi
  done
fi

# The encoder the model was trained on: its dumped frames.
encoder_tag=$(encoder_tag_of "${train_config}")
speech_root=${dumpdir}/encoder${encoder_tag}

# evaluate_qa on closed-set questions or probes, split into jobs; redone when
# any input or the model changes.
#   answer_split <out dir> <questions or probes .jsonl> <evaluate_qa.py input args> <output file>...
answer_split() {
  local dir=$1 items=$2 input=$3 cmd
  shift 3
  mkdir -p "${dir}"
  if [ ! -s "${items}" ]; then log "${items}: nothing to answer"; return; fi
  cmd="${python} -m espnet_blsp.bin.evaluate_qa --questions ${items} --keys @IN@ --out_dir @OUT@ --num_threads ${num_threads} ${input}"
  # shellcheck disable=SC2086  # the command's words, each file in it fingerprinted
  if up_to_date "${dir}/.qa_done" ${cmd}; then log "${dir}: $(basename "${items}") done, skipping"; return; fi
  rm -f "${dir}/.qa_done"
  ${python} -c "import json, sys; [print(json.loads(l)['id']) for l in open(sys.argv[1])]" "${items}" > "${dir}/qa_keys"
  run_split "${dir}/qa_keys" "${dir}" qa "${cmd}" "$@"
  # shellcheck disable=SC2086
  mark_done "${dir}/.qa_done" ${cmd}
}

# One system on one test set: the description task (its description, the
# loss of the reference description given its own input and another's),
# zero-shot ASR, the closed-set questions and the description probes. Each
# redone when any input or the model changes.
#   evaluate <system dir> <set> <evaluate.py input args> <evaluate_qa.py input args>
evaluate() {
  local sd=$1 dset=$2 input=$3 qa_input=$4
  local d=${dumpdir}/raw/${dset}
  mkdir -p "${sd}"
  local instruction cmd
  printf -v instruction '%q' "${asr_instruction}"
  cmd="${python} -m espnet_blsp.bin.evaluate --keys @IN@ --out_dir @OUT@ --ref_continuation ${d}/description --asr_instruction ${instruction} --config ${describe_config} ${eval_config:+--eval_config ${eval_config}} --test_set ${dset} --num_threads ${num_threads} ${input}"
  # shellcheck disable=SC2086  # the command's words, each file in it fingerprinted
  if up_to_date "${sd}/.done" ${cmd}; then
    log "${sd}: done, skipping"
  else
    rm -f "${sd}/.done"
    # shellcheck disable=SC2046  # the task answers' file names
    run_split "${d}/description" "${sd}" eval "${cmd}" continuation nll nll_other slot_length \
      $(${python} -m espnet_blsp.evaluation.tasks ${eval_config:+--config "${eval_config}"} --set "${dset}")
    # shellcheck disable=SC2086
    mark_done "${sd}/.done" ${cmd}
  fi
  if "${eval_probe}"; then
    answer_split "${sd}/probe" "${dumpdir}/qa/${dset}/probes.jsonl" "${qa_input}" qa_option_nll
  fi
  if "${eval_qa}"; then
    answer_split "${sd}" "${dumpdir}/qa/${dset}/questions.jsonl" "${qa_input}" qa_option_nll qa_answer
  fi
}

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  log "Stage 7: decode test sets"
  for dset in ${test_sets}; do
    d=${dumpdir}/raw/${dset}
    speech="--speech ${speech_root}/${dset}/feats.scp,kaldi_ark --batch_size ${inference_batch_size}"
    desta2_input="--train_config ${desta2_exp}/config.yaml ${speech} --asr_hyp ${d}/asr_hyp"
    if "${eval_text_llm}"; then
      log "${dset}: Text+LLM (the seed)"
      evaluate "${eval_dir}/${dset}/text_llm" "${dset}" \
        "--llm ${llm} --text ${d}/seed --continuation_from ${d}/description" \
        "--llm ${llm} --text ${d}/seed --prompt describe_seed"
    fi
    if "${eval_cascade}"; then
      log "${dset}: Whisper+LLM (the transcript alone)"
      evaluate "${eval_dir}/${dset}/whisper_cascade" "${dset}" \
        "--llm ${llm} --text ${d}/asr_hyp" "--llm ${llm} --text ${d}/asr_hyp --prompt describe_seed"
    fi
    if "${eval_untrained}"; then
      log "${dset}: untrained adapter"
      evaluate "${eval_dir}/${dset}/desta2_untrained" "${dset}" "${desta2_input}" "${desta2_input}"
    fi
    log "${dset}: DeSTA2 (${inference_model})"
    model="--model_file ${desta2_exp}/${inference_model}"
    evaluate "${eval_dir}/${dset}/desta2" "${dset}" "${desta2_input} ${model}" "${desta2_input} ${model}"
    for config in ${variant_configs}; do
      name=$(basename "${config}" .yaml)
      vexp=$(variant_exp "${config}")
      log "${dset}: the variant ${name} (${vexp}/${inference_model})"
      # A prompt without the <asr_hyp> slot leaves the transcript unread.
      vinput="--train_config ${vexp}/config.yaml ${speech} --asr_hyp ${d}/asr_hyp --model_file ${vexp}/${inference_model}"
      evaluate "${eval_dir}/${dset}/${name}" "${dset}" "${vinput}" "${vinput}"
    done
    if [ -n "${blsp_exp}" ]; then
      log "${dset}: BLSP (${blsp_exp}), asked DeSTA2's question"
      # BLSP's model re-encodes the waveforms with the encoder its dump came from.
      blsp_input="--train_config ${blsp_exp}/config.yaml --model_file ${blsp_exp}/${inference_model} --speech ${d}/wav.scp,sound --batch_size ${inference_batch_size}"
      evaluate "${eval_dir}/${dset}/blsp" "${dset}" "${blsp_input} --ask describe_seed" "${blsp_input}"
    fi
  done
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  log "Stage 8: scoring"
  for dset in ${test_sets}; do
    d=${dumpdir}/raw/${dset}
    for sd in "${eval_dir}/${dset}"/*/; do
      sd=${sd%/}
      if [ -f "${sd}/.done" ]; then
        ${python} -m espnet_blsp.bin.score --sys_dir "${sd}" --ref_text "${d}/text" --ref_continuation "${d}/description" \
          ${eval_config:+--eval_config "${eval_config}"} --test_set "${dset}"
        ${python} -m espnet_blsp.bin.score_qa --sys_dir "${sd}" --descriptions "${sd}/continuation" --data_dir "${d}"
      fi
      [ -f "${sd}/.qa_done" ] && ${python} -m espnet_blsp.bin.score_qa --sys_dir "${sd}" --questions "${dumpdir}/qa/${dset}/questions.jsonl"
      [ -f "${sd}/probe/.qa_done" ] && ${python} -m espnet_blsp.bin.score_qa --sys_dir "${sd}/probe" --questions "${dumpdir}/qa/${dset}/probes.jsonl"
    done
  done
  {
    echo "# RESULTS (DeSTA2)"
    echo
    echo "- recipe: egs2/$(basename "$(cd .. && pwd)")/$(basename "$PWD"), $(date '+%Y-%m-%d')"
    echo "- LLM: ${llm}; speech encoder: ${whisper}; config: ${train_config}; model: ${inference_model}"
    echo "- description agreement (chrF, BLEU) is against the LLM's description of the seed transcript"
    echo "  (Text+LLM is 100 by construction); loss = mean per-token NLL of that description; loss drop ="
    echo "  the loss given another utterance's input minus the loss given its own. ASR WER: the transcription"
    echo "  prompt with the speech alone (no Whisper transcript in it)."
    [ -z "${eval_config}" ] || echo "- other tasks (${eval_config}): each asked as its config says; continuation writing is asked in each system's own prompt and scored against the LLM's continuation of the transcript"
    "${eval_probe}" && echo "- description probes: the reference description up to where it names an attribute's value, then each value's phrase scored given the system's input (make_probe); calibrated: each value's NLL less its mean over the attribute's probes"
    [ -f "${desta2_exp}/train_seconds" ] && echo "- training: $(cat "${desta2_exp}/train_seconds") s"
    for config in ${variant_configs}; do
      vexp=$(variant_exp "${config}")
      [ -f "${vexp}/train_seconds" ] && echo "- variant ${config}: trained alike from the same data; $(cat "${vexp}/train_seconds") s"
    done
    "${eval_qa}" || echo "- closed-set questions not run (--eval_qa false)"
    echo
    echo "## The description task and zero-shot ASR"
    echo
    ${python} -m espnet_blsp.bin.score --results "${eval_dir}" --task description
    echo
    echo "## Closed-set questions, description probes and attribute mentions in the descriptions"
    echo
    ${python} -m espnet_blsp.bin.score_qa --results "${eval_dir}"
  } > RESULTS.md.tmp
  mv RESULTS.md.tmp RESULTS.md
  cat RESULTS.md
  log "Results: $PWD/RESULTS.md"
fi
log "Successfully finished."
