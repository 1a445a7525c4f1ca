#!/usr/bin/env bash
# Installs whatever crossmax needs that is missing, then builds it. Idempotent and quick when nothing is missing.
#   bash scripts/setup.sh            # runtime: libtorch, OpenBLAS, npm packages, the native addon, the TypeScript build
#   bash scripts/setup.sh --tests    # also the PyTorch reference (Debian's python3-torch/torchvision) the tests compare with
#   bash scripts/setup.sh --addon-only   # only (re)build the native addon if it is stale (scripts/gpu-check, on a machine
#                                        # without apt or a registry: npm packages and dist/ are carried there)
# LIBTORCH=/path/to/libtorch selects another libtorch (e.g. the one inside a CUDA PyTorch installation) instead of
# Debian's libtorch-dev; the addon is rebuilt when that choice changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
with_tests=0
addon_only=0
case "${1:-}" in
  --tests) with_tests=1 ;;
  --addon-only) addon_only=1 ;;
  "") ;;
  *) printf 'crossmax setup: unknown option %s (--tests | --addon-only)\n' "$1" >&2; exit 2 ;;
esac

say() { printf 'crossmax setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*  (install it by hand, or run as root)"; exit 1; fi
}

# -- system packages (Debian/Ubuntu) -------------------------------------------------------------------------
if [ "$addon_only" = 0 ]; then
missing=()
need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || missing+=("$1"); }
if command -v dpkg-query >/dev/null; then
  # libgloo-dev: gloo's headers, which c10d's ProcessGroupGloo.hpp includes (distributed training on CPU).
  if [ -z "${LIBTORCH:-}" ]; then need_pkg libtorch-dev; need_pkg libgloo-dev; fi
  # Debian's libtorch multiplies matrices through the system libblas.so.3; the reference BLAS is ~30x slower.
  need_pkg libopenblas0-pthread
  need_pkg g++
  need_pkg make
  need_pkg python3
  # The tests compare with PyTorch (python3-torch/torchvision) and open the HTML reports in headless Chromium.
  if [ "$with_tests" = 1 ]; then need_pkg python3-torch; need_pkg python3-torchvision; need_pkg chromium; fi
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
elif [ -z "${LIBTORCH:-}" ]; then
  say "not a Debian/Ubuntu system: install libtorch and set LIBTORCH=/path/to/libtorch"; exit 1
fi

# -- Node.js and npm packages --------------------------------------------------------------------------------
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then say "Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))"; exit 1; fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
fi  # addon_only

# -- native addon: rebuilt when its sources or the chosen libtorch change --------------------------------------
addon=native/build/Release/crossmax_native.node
stamp=native/build/libtorch.stamp
# The defines name the c10d backends found (Gloo, NCCL): installing libgloo-dev later rebuilds the addon with Gloo.
want="LIBTORCH=${LIBTORCH:-debian} $(node scripts/libtorch-paths.cjs include) $(node scripts/libtorch-paths.cjs defines)"
if [ ! -f "$addon" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
   || [ -n "$(find native/src native/binding.gyp scripts/libtorch-paths.cjs -newer "$addon" 2>/dev/null | head -1)" ]; then
  say "building the native addon (about a minute)"
  node scripts/build-native.mjs >&2
  printf '%s' "$want" > "$stamp"
fi

[ "$addon_only" = 1 ] && exit 0

# -- TypeScript ------------------------------------------------------------------------------------------------
if [ ! -f dist/.stamp ] || [ -n "$(find src test bench tsconfig.json package.json -newer dist/.stamp 2>/dev/null | head -1)" ]; then
  say "compiling TypeScript"
  npx tsc -p tsconfig.json >&2
  touch dist/.stamp
fi
