#!/usr/bin/env bash
# Every demo zone, exported in RFC 3597 generic form, must load cleanly in Knot's
# kzonecheck and NSD's nsd-checkzone: the zone files are standard DNS.
# Usage: tools/interop/zones.sh   (needs knot-dnssecutils and nsd; .ci/run installs them)
set -euo pipefail
cd "$(dirname "$0")/../.."
MIMI=${MIMI:-target/release/mimi}
[ -x "$MIMI" ] || cargo build --release --quiet
for tool in kzonecheck nsd-checkzone; do
  command -v "$tool" >/dev/null || { echo "zones.sh: $tool is not installed" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pass=0 fail=0
for f in zones/*.zone; do
  origin=$(awk '$1 == "$ORIGIN" { print $2; exit }' "$f")
  "$MIMI" zone export "$f" --generic --out "$out/$(basename "$f")"
  for check in "kzonecheck -o $origin" "nsd-checkzone $origin"; do
    if log=$($check "$out/$(basename "$f")" 2>&1); then
      pass=$((pass + 1))
    else
      fail=$((fail + 1))
      echo "FAIL ${check%% *} $f:"; echo "$log" | sed 's/^/  /'
    fi
  done
  # The generic form must read back to the same zone.
  if ! diff <("$MIMI" zone export "$f") <("$MIMI" zone export "$out/$(basename "$f")") >/dev/null; then
    fail=$((fail + 1)); echo "FAIL round trip of $f through the generic form"
  else
    pass=$((pass + 1))
  fi
done
echo "zones.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
