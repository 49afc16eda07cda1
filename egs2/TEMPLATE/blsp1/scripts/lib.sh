# Functions shared by the recipe scripts (blsp.sh, desta2.sh). Sourced after
# the options are parsed: run_split reads ${nj} and ${decode_cmd}, llm_targets
# also ${python}, ${llm} and ${num_threads}, encoder_tag_of ${python}.

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

# Runs <cmd> over <nj> parts of <keys>: in <cmd>, @IN@ becomes a part (a
# file of lines of <keys>) and @OUT@ that job's output dir. Then merges each
# named file of the job dirs into <out_dir>, sorted. A rerun keeps the split,
# and the jobs themselves skip what they finished.
#   run_split <keys> <out_dir> <logname> <cmd> <file>...
run_split() {
  local keys=$1 out=$2 name=$3 cmd=$4
  shift 4
  local dir=${out}/split_${name}
  local n
  n=$(min "${nj}" "$(wc -l < "${keys}")")
  # A split made for other keys or another nj would lose or duplicate lines.
  local meta
  meta="nj=${n} keys=$(md5sum < "${keys}" | cut -d' ' -f1)"
  if [ -d "${dir}" ] && [ "$(cat "${dir}/split.meta" 2>/dev/null)" != "${meta}" ]; then
    log "${dir}: made for other keys or --nj; splitting again"
    rm -rf "${dir}"
  fi
  mkdir -p "${dir}/log"
  local parts=()
  for j in $(seq "${n}"); do parts+=("${dir}/keys.${j}"); done
  if [ ! -f "${dir}/split.meta" ]; then
    utils/split_scp.pl "${keys}" "${parts[@]}"
    echo "${meta}" > "${dir}/split.meta"
  fi
  cmd=${cmd//@IN@/${dir}/keys.JOB}
  cmd=${cmd//@OUT@/${dir}/out.JOB}
  ${decode_cmd} JOB=1:"${n}" "${dir}/log/${name}.JOB.log" "${cmd}"
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

# Step 1 of BLSP and DeSTA2: the LLM answers <config>'s instruction about each
# line of <data dir>/<input> (transcripts, seeds) into <data dir>/<output>, the
# training targets; empty answers cannot be targets and are left out (the jobs
# log them). Skipped once done.
#   llm_targets <data dir> <input> <output> <generate_text config>
llm_targets() {
  local d=$1 input=$2 output=$3 config=$4
  if [ -f "${d}/.${output}.done" ]; then log "${d}/${output} exists, skipping"; return; fi
  run_split "${d}/${input}" "${d}" "${output}" \
    "${python} -m espnet_blsp.bin.generate_text --llm ${llm} --config ${config} --num_threads ${num_threads} --text @IN@ --output @OUT@/${output}" \
    "${output}"
  awk 'NF > 1' "${d}/${output}" > "${d}/${output}.tmp"
  log "${d}: $(wc -l < "${d}/${output}.tmp") of $(wc -l < "${d}/${input}") answers usable as ${output}"
  mv "${d}/${output}.tmp" "${d}/${output}"
  touch "${d}/.${output}.done"
}
