# Shared locations; sourced by the scripts.  Everything expensive lives in a
# cache outside the repository so a clean clone reuses it.
: "${TOA_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/toa-fleet}"
: "${TOA_VENV:=$TOA_CACHE/venv}"
: "${TOA_VENV_LEGACY:=$TOA_CACHE/venv-legacy}"
# ansible-test 2.16 for the sanity tests on Python 2.7 and 3.6 (scripts/sanity.py).
: "${TOA_VENV_SANITY_LEGACY:=$TOA_CACHE/venv-sanity-legacy}"
# ansible-builder and ansible-runner for the execution environments (scripts/setup.sh awx).
: "${TOA_VENV_AWX:=$TOA_CACHE/venv-awx}"
export TOA_CACHE TOA_VENV TOA_VENV_LEGACY TOA_VENV_SANITY_LEGACY TOA_VENV_AWX
