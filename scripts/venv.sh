#!/usr/bin/env bash
# Create .venv in the repository root if needed and install spike_encode into it (editable),
# with the extras named in $1 (comma-separated, e.g. "test" or "plot"). Prints the venv's python.
# pip gets scripts/constraints.txt: the torch and torchvision releases this project is tested
# with (the package itself does not cap them).
# The venv sees the base interpreter's packages (--system-site-packages), so a PyGeNN that
# you installed there from GeNN's release (see README) is used by the genn backend and tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
known="$(awk '/^\[project.optional-dependencies\]/ {f = 1; next} /^\[/ {f = 0}
              f && /^[A-Za-z0-9_-]+ *=/ {sub(/ *=.*/, ""); printf "%s ", $0}' "$root/pyproject.toml")"
if [ "$extras" = "-h" ] || [ "$extras" = "--help" ]; then
  echo "usage: scripts/venv.sh [EXTRAS]  (comma-separated, of: ${known% })"
  exit 0
fi
IFS=, read -ra asked <<< "$extras"
for extra in "${asked[@]}"; do
  case " $known" in
    *" $extra "*) ;;
    *) echo "scripts/venv.sh: error: unknown extra '$extra' (known: ${known% })" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv --system-site-packages "$root/.venv" >&2
fi
target="$root"
[ -n "$extras" ] && target="$root[$extras]"
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$root/scripts/constraints.txt" -e "$target" >&2
echo "$root/.venv/bin/python"
