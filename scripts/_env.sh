# Sourced by the scripts: make .venv if missing and install ω IM into it.
# Usage: . scripts/_env.sh [extra]   (extra: "dev" for the test tools)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v gpg >/dev/null 2>&1; then
  echo "GnuPG (gpg) is required: install it with 'apt-get install gnupg' (Debian/Ubuntu)" >&2
  exit 1
fi
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-${1:-run}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing ω IM into .venv (log: .venv/install.log)…" >&2
  what="."
  [ "${1:-}" = "dev" ] && what=".[dev]"
  if ! { .venv/bin/python -m pip install -q --upgrade pip \
         && .venv/bin/python -m pip install -q -e "$what"; } >.venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "installing failed: see .venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
