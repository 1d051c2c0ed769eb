# Sourced by tools/install_user_env.sh and tools/install_detectron2_env.sh:
# a venv in the cache, made from a specification and reused while its stamp
# file holds that specification.
#
#   cached_venv_lock VENV
#       hold VENV.lock until the script exits (concurrent runs wait for one
#       build) and remove the tests' private copies (run-*/ beside VENV)
#       older than a day, left by runs that were killed;
#   cached_venv_reuse VENV STAMP SPEC IMPORTS
#       when STAMP holds SPEC and the venv's python imports IMPORTS: remove
#       a wrs_mm an earlier version of the tests installed there, print the
#       python and exit 0.

cached_venv_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1.lock"
  flock 9
  find "$(dirname "$1")" -maxdepth 1 -name 'run-*' -mmin +1440 \
    -exec rm -rf {} + 2>/dev/null || true
}

cached_venv_reuse() {
  if [ -f "$2" ] && [ "$(cat "$2")" = "$3" ] &&
    "$1/bin/python" -c "import $4" 2>/dev/null; then
    "$1/bin/python" -m pip uninstall -q -y wrs_mm 2>/dev/null | grep -v \
      'not installed' >&2 || true
    echo "$1/bin/python"
    exit 0
  fi
}
