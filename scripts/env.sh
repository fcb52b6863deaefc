# Shared locations; sourced by the scripts.  Everything expensive lives in a
# cache outside the repository so a clean clone reuses it.
: "${TOA_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/toa-fleet}"
: "${TOA_VENV:=$TOA_CACHE/venv}"
: "${TOA_VENV_LEGACY:=$TOA_CACHE/venv-legacy}"
export TOA_CACHE TOA_VENV TOA_VENV_LEGACY
