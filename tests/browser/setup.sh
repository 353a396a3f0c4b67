#!/usr/bin/env bash
# The console's browser test (tests/it/browser.rs) runs console.mjs with the pinned
# playwright-core and yauzl of package-lock.json, installed here with `npm ci` into
# target/browser-test (never into the repo). A no-op when that install matches the lock.
# playwright-core drives Debian's chromium (/usr/bin/chromium, installed by .ci/run); it
# never downloads a browser of its own (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD, --ignore-scripts).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
scratch="${RESTYLE_BROWSER_DEPS:-$root/target/browser-test}"

if ! command -v npm >/dev/null 2>&1; then
  echo "browser test setup: npm is missing (node and npm come with the machine)" >&2
  exit 1
fi
mkdir -p "$scratch"
if cmp -s "$here/package-lock.json" "$scratch/.installed-lock.json" \
  && [ -d "$scratch/node_modules/playwright-core" ]; then
  exit 0
fi
echo "browser test setup: installing the pinned playwright-core and yauzl into $scratch" >&2
cp "$here/package.json" "$here/package-lock.json" "$scratch/"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
  npm ci --prefix "$scratch" --ignore-scripts --no-audit --no-fund >&2
cp "$here/package-lock.json" "$scratch/.installed-lock.json"
