#!/usr/bin/env bash
# Synthesizes the mini corpus in the real LibriSpeech layout, then prepares it
# with the LibriSpeech recipe's own data prep, plus the voice side files
# (utt2accent, utt2speed, utt2pitch, utt2voice) for paralinguistic work.
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

max_utts_per_subset=  # for quick tests: only this many utterances per subset
nj=2
data_dir=data

. utils/parse_options.sh
. ./db.sh
. ./path.sh

command -v espeak-ng >/dev/null && command -v sox >/dev/null || {
  echo "$0: needs the Debian packages espeak-ng and sox (tools/install.sh installs them as root)" >&2
  exit 1
}

opts=""
[ -n "${max_utts_per_subset}" ] && opts="--max_utts_per_subset ${max_utts_per_subset}"
log "Synthesizing ${LIBRISPEECH} (resumable)"
python local/synthesize.py --out_root "${LIBRISPEECH}" --nj "${nj}" ${opts}

for subset in train-synth dev-synth test-synth; do
  dst=${data_dir}/${subset//-/_}
  python local/data_prep.py "${LIBRISPEECH}/${subset}" "${dst}"
  python local/voice_side_files.py "${LIBRISPEECH}/${subset}/VOICES.tsv" "${dst}"
done
log "Successfully finished. [elapsed=${SECONDS}s]"
