# Environment for the recipe: the project's venv (tools/install.sh) if present,
# this checkout on PYTHONPATH, and the recipe utils on PATH.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -f "${MAIN_ROOT}/tools/venv/bin/activate" ]; then
  . "${MAIN_ROOT}/tools/venv/bin/activate"
fi
export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}
export PATH=${PWD}/utils:${PATH}
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
