#!/usr/bin/env bash
# Prepares Kaldi-style data directories for LibriSpeech subsets.
# Run from the recipe directory (egs2/librispeech/blsp).
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

datasets="train-clean-100 train-clean-360 train-other-500 dev-clean test-clean test-other"
combine_train=train_960  # the train-* subsets are also merged into <data_dir>/<this>; "" to skip
data_dir=data  # output dirs are <data_dir>/<subset with '-' -> '_'>

help_message=$(cat << EOF
Usage: $0 [--datasets "<subset> ..."] [--data_dir <dir>] [--combine_train <name>]
Prepares <data_dir>/<name> (wav.scp, text, utt2spk, spk2utt, utt2gender,
spk2gender) for each LibriSpeech subset, e.g. train-clean-100 -> ${data_dir}/train_clean_100.
The corpus root is LIBRISPEECH from ./db.sh.
Options:
  --datasets  # subsets to prepare, comma- or space-separated (default="${datasets}")
  --data_dir  # output root (default="${data_dir}")
  --combine_train  # merged training set name (default="${combine_train}")
EOF
)

. utils/parse_options.sh

if [ $# -ne 0 ]; then
  echo "$0: unexpected arguments: $*" >&2
  echo "${help_message}" >&2
  exit 1
fi

for f in ./db.sh ./path.sh; do
  [ -f "${f}" ] || { echo "$0: ${f} not found; run this from the recipe directory" >&2; exit 1; }
done
. ./db.sh
# Environment activation scripts often read unset variables, so relax -u here.
set +u
. ./path.sh
set -u

download_hint="Download the subsets from https://www.openslr.org/12 (OpenSLR resource 12),
extract them (they unpack to LibriSpeech/<subset>), and set LIBRISPEECH in db.sh
to the directory holding the subsets (or the one holding LibriSpeech/)."

if [ -z "${LIBRISPEECH:-}" ]; then
  echo "$0: LIBRISPEECH is not set in db.sh." >&2
  echo "${download_hint}" >&2
  exit 1
fi

# Resolve every subset first so that nothing is written when one is missing.
subset_dirs=()
for dset in ${datasets//,/ }; do  # comma- or space-separated
  if [ -d "${LIBRISPEECH}/${dset}" ]; then
    subset_dirs+=("${LIBRISPEECH}/${dset}")
  elif [ -d "${LIBRISPEECH}/LibriSpeech/${dset}" ]; then
    subset_dirs+=("${LIBRISPEECH}/LibriSpeech/${dset}")
  else
    echo "$0: LibriSpeech subset '${dset}' not found: neither ${LIBRISPEECH}/${dset}" \
      "nor ${LIBRISPEECH}/LibriSpeech/${dset} exists." >&2
    echo "${download_hint}" >&2
    exit 1
  fi
done

for src in "${subset_dirs[@]}"; do
  dset=$(basename "${src}")
  dst=${data_dir}/${dset//-/_}
  log "Preparing ${dst} from ${src}"
  python3 local/data_prep.py "${src}" "${dst}"
done

train_dirs=$(for src in "${subset_dirs[@]}"; do b=$(basename "${src}"); case $b in train-*) echo "${data_dir}/${b//-/_}";; esac; done)
if [ -n "${combine_train}" ] && [ -n "${train_dirs}" ]; then
  log "Combining ${train_dirs//$'\n'/ } -> ${data_dir}/${combine_train}"
  mkdir -p "${data_dir}/${combine_train}"
  for f in wav.scp text utt2spk utt2gender; do
    [ -f "$(echo "${train_dirs}" | head -n1)/${f}" ] || continue
    # shellcheck disable=SC2086
    cat $(for d in ${train_dirs}; do echo "${d}/${f}"; done) | LC_ALL=C sort > "${data_dir}/${combine_train}/${f}.tmp"
    mv "${data_dir}/${combine_train}/${f}.tmp" "${data_dir}/${combine_train}/${f}"
  done
  utils/utt2spk_to_spk2utt.pl "${data_dir}/${combine_train}/utt2spk" > "${data_dir}/${combine_train}/spk2utt"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
