# Functions shared by the recipe scripts (blsp.sh, desta2.sh). Sourced after
# the options are parsed: they read ${python}, run_split ${nj} and
# ${decode_cmd}, llm_targets ${llm} and ${num_threads}, asr_transcripts
# ${whisper} and ${num_threads}.

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
min() { local a=$1 b=$2; echo $(( a < b ? a : b )); }

# Moves an earlier run's <log> aside to <log>.N (the first free N), so a
# rerun after a crash does not overwrite what the crashed run said.
#   keep_log <log>
keep_log() {
  local f=$1 n=1
  [ -f "${f}" ] || return 0
  while [ -e "${f}.${n}" ]; do n=$((n + 1)); done
  mv "${f}" "${f}.${n}"
}

# Skip markers that know what made the work they mark: up_to_date is true
# when <marker> records these words and the content of every file or dir they
# name (espnet_blsp.utils.stamp); otherwise it says what changed, if anything
# was recorded. mark_done records them.
#   up_to_date <marker> <word>...
#   mark_done <marker> <word>...
up_to_date() { ${python} -m espnet_blsp.utils.stamp check "$@"; }
mark_done() { ${python} -m espnet_blsp.utils.stamp write "$@"; }

# Runs <cmd> over <nj> parts of <keys>: in <cmd>, @IN@ becomes a part (a
# file of lines of <keys>) and @OUT@ that job's output dir. Then merges each
# named file of the job dirs into <out_dir>, sorted. The jobs skip what they
# finished (and start over if their command or input changed). A rerun keeps
# the split, so finished work and the jobs' batches stay as they were: a new
# --nj only limits how many jobs run at once. Other keys are split again.
#   run_split <keys> <out_dir> <logname> <cmd> <file>...
run_split() {
  local keys=$1 out=$2 name=$3 cmd=$4
  shift 4
  local dir=${out}/split_${name}
  local md5 n
  md5=$(md5sum < "${keys}" | cut -d' ' -f1)
  if [ -d "${dir}" ] && [ "$(sed -n 's/.*keys=\([0-9a-f]*\).*/\1/p' "${dir}/split.meta" 2>/dev/null)" != "${md5}" ]; then
    log "${dir}: made for other keys; splitting again"
    rm -rf "${dir}"
  fi
  mkdir -p "${dir}/log"
  if [ -f "${dir}/split.meta" ]; then
    n=$(find "${dir}" -maxdepth 1 -name 'keys.*' | wc -l)
    [ "${n}" -le "${nj}" ] || log "${dir}: keeping its ${n} jobs, at most ${nj} at once (rm -r ${dir} to split anew)"
  else
    n=$(min "${nj}" "$(wc -l < "${keys}")")
    local parts=()
    for j in $(seq "${n}"); do parts+=("${dir}/keys.${j}"); done
    utils/split_scp.pl "${keys}" "${parts[@]}"
    echo "keys=${md5}" > "${dir}/split.meta"
  fi
  cmd=${cmd//@IN@/${dir}/keys.JOB}
  cmd=${cmd//@OUT@/${dir}/out.JOB}
  ${decode_cmd} --max-jobs-run "${nj}" JOB=1:"${n}" "${dir}/log/${name}.JOB.log" "${cmd}"
  for f in "$@"; do
    for j in $(seq "${n}"); do cat "${dir}/out.${j}/${f}"; done | LC_ALL=C sort > "${out}/${f}.tmp"
    mv "${out}/${f}.tmp" "${out}/${f}"
  done
}

# The suffix of the dump and statistics dirs for <train config>'s encoder taps:
# "_layers0-1-2-3" for encoder_conf.layers [0, 1, 2, 3], "" without layers.
#   encoder_tag_of <train config>
encoder_tag_of() {
  ${python} -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])).get('encoder_conf') or {}; print('_layers' + '-'.join(map(str, c['layers'])) if c.get('layers') else '')" "$1"
}

# The encoder section of <train config> ({"encoder": ..., "encoder_conf": ...}),
# what its dumps depend on.
#   encoder_spec_of <train config>
encoder_spec_of() {
  ${python} -c "import json, sys, yaml; c = yaml.safe_load(open(sys.argv[1])); print(json.dumps({k: c.get(k) for k in ('encoder', 'encoder_conf')}, sort_keys=True))" "$1"
}

# Whisper's transcripts of <wav.scp> into <dir>/<output> (espnet_blsp.bin.whisper_decode),
# skipped once done with the same audio list and Whisper.
#   asr_transcripts <wav.scp> <dir> <output>
asr_transcripts() {
  local scp=$1 d=$2 output=$3
  local marker=${d}/.${output}.done what=("${scp}" "${whisper}")
  if up_to_date "${marker}" "${what[@]}"; then log "${d}/${output} done, skipping"; return; fi
  rm -f "${marker}"
  mkdir -p "${d}"
  run_split "${scp}" "${d}" whisper \
    "${python} -m espnet_blsp.bin.whisper_decode --model ${whisper} --num_threads ${num_threads} --wav_scp @IN@ --output @OUT@/${output}" \
    "${output}"
  mark_done "${marker}" "${what[@]}"
}

# Step 1 of BLSP and DeSTA2: the LLM answers <config>'s instruction about each
# line of <data dir>/<input> (transcripts, seeds) into <data dir>/<output>, the
# training targets; empty answers cannot be targets and are left out (the jobs
# log them). Skipped once done with the same input, LLM and config.
#   llm_targets <data dir> <input> <output> <generate_text config>
llm_targets() {
  local d=$1 input=$2 output=$3 config=$4
  local marker=${d}/.${output}.done what=("${d}/${input}" "${llm}" "${config}")
  if up_to_date "${marker}" "${what[@]}"; then log "${d}/${output} done, skipping"; return; fi
  rm -f "${marker}"
  run_split "${d}/${input}" "${d}" "${output}" \
    "${python} -m espnet_blsp.bin.generate_text --llm ${llm} --config ${config} --num_threads ${num_threads} --text @IN@ --output @OUT@/${output}" \
    "${output}"
  awk 'NF > 1' "${d}/${output}" > "${d}/${output}.tmp"
  log "${d}: $(wc -l < "${d}/${output}.tmp") of $(wc -l < "${d}/${input}") answers usable as ${output}"
  mv "${d}/${output}.tmp" "${d}/${output}"
  mark_done "${marker}" "${what[@]}"
}
