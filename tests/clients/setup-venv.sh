#!/usr/bin/env bash
# Creates (once) the private virtualenv the official-client tests run: DIR (default
# target/py-clients) with tests/clients/requirements.txt installed. A marker holding the
# requirements' hash makes a second run a no-op; a changed requirements file rebuilds it.
# Used by .ci/run and by tests/it/official_clients.rs (which holds a file lock around it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-${CARGO_TARGET_DIR:-$here/../../target}/py-clients}"
req="$here/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
marker="$dir/.restyle-requirements"
if [ -x "$dir/bin/python" ] && [ "$(cat "$marker" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "py-clients: creating $dir" >&2
rm -rf "$dir"
python3 -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
echo "$want" > "$marker"
