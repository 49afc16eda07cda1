# shellcheck shell=bash
# Command-line option parser for recipe scripts (Kaldi-compatible interface).
#
# Usage (inside a script, after the defaults are set):
#   nj=4
#   use_gpu=false
#   help_message="Usage: $0 [--nj N] [--use_gpu true|false] <data-dir>"
#   . utils/parse_options.sh
#
# Leading options of the *caller's* positional parameters are consumed
# (this file is sourced, so `shift` acts on the caller's "$@"):
#   --foo_bar value | --foo-bar value | --foo-bar=value  ->  foo_bar=value
#   --config FILE      source FILE (lines of var=value) at that point
#   --help | -h        print $help_message (if set) and exit 0
#   --                 stop option parsing
# Only variables that already exist may be set, so typos fail loudly.
# If a variable's current value is true/false, the new value must be too.
# Parsing stops at the first argument that does not start with "--".
# Safe under `set -euo pipefail`. Internal names use the __po_ prefix to
# avoid clobbering the caller's variables.

__po_die() {
  echo "$0: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help | -h)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n' "${help_message}"
      else
        echo "Usage: $0 [options] (no help_message is defined for this script)"
      fi
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --config | --config=*)
      if [ "$1" = --config ]; then
        [ $# -ge 2 ] || __po_die "option --config needs a file argument"
        __po_config=$2
        shift 2
      else
        __po_config=${1#--config=}
        shift
      fi
      [ -f "${__po_config}" ] || __po_die "config file '${__po_config}' (from --config) does not exist"
      # shellcheck disable=SC1090
      . "${__po_config}"
      ;;
    --?*)
      # Split "--name=value" or take the value from the next argument.
      __po_opt=${1#--}
      if [[ ${__po_opt} == *=* ]]; then
        __po_val=${__po_opt#*=}
        __po_opt=${__po_opt%%=*}
        shift
      else
        [ $# -ge 2 ] || __po_die "option --${__po_opt} needs a value"
        __po_val=$2
        shift 2
      fi
      __po_name=${__po_opt//-/_}
      [[ ${__po_name} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
        || __po_die "invalid option name '--${__po_opt}'"
      # declare -p succeeds only for variables that exist (set or declared).
      if ! declare -p "${__po_name}" > /dev/null 2>&1; then
        __po_die "unknown option --${__po_opt} (no variable '${__po_name}' is defined; see --help)"
      fi
      __po_old=${!__po_name-}
      if [[ ${__po_old} == true || ${__po_old} == false ]] \
        && [[ ${__po_val} != true && ${__po_val} != false ]]; then
        __po_die "option --${__po_opt} expects true or false, got '${__po_val}'"
      fi
      # printf -v assigns without evaluating the value as code.
      printf -v "${__po_name}" '%s' "${__po_val}"
      ;;
    *)
      break
      ;;
  esac
done

unset -v __po_opt __po_val __po_name __po_old __po_config
unset -f __po_die
true  # sourcing must not propagate a failed last test under set -e
