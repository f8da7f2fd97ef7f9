#!/usr/bin/env bash
# Zone benchmark: import (sign), parse + check (verify every signature), export, and Knot's
# kzonecheck on the exported RFC 3597 form of the same zone, in one run.
# Usage: tools/bench/zone.sh [MAPPINGS]   (default 1000000; needs knot-dnssecutils, time)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
cargo build --release --quiet
MIMI=$PWD/target/release/mimi
command -v kzonecheck >/dev/null || { echo "needs kzonecheck (apt-get install knot-dnssecutils)"; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# Numbers +1 555 000 0000 onwards, all in the carrier block 5.5.5.1.e164.mimi.arpa.
python3 - "$N" > "$dir/map.csv" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
out.write("sii,ssi,context,priority,ttl\n")
ctx = ("personal", "business", "any")
for i in range(n):
    out.write(f"+1555{i:07d},mimi://chat.example/u/user{i},{ctx[i % 3]},10,3600\n")
PY
"$MIMI" key generate --provider chat.example --out "$dir/chat.key" >/dev/null
"$MIMI" key public "$dir/chat.key" > "$dir/trust.toml"
"$MIMI" zone new 5.5.5.1.e164.mimi.arpa. --out "$dir/z.zone" --ns ns1.5.5.5.1.e164.mimi.arpa.=127.0.0.1 >/dev/null

measure() { # label, command... -> prints "label seconds peakMiB"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$dir/t" "$@" > "$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
  read -r secs kib < "$dir/t"
  printf "%-34s %8.2f s %8.0f MiB\n" "$label" "$secs" "$((kib / 1024))"
  echo "$secs" > "$dir/last"
}
echo "zone benchmark: $N mappings, $(nproc) cores"
measure "mimi zone import (sign + write)" "$MIMI" zone import "$dir/z.zone" --csv "$dir/map.csv" --key "$dir/chat.key"
echo "zone file: $(du -m "$dir/z.zone" | cut -f1) MiB"
measure "mimi zone check (parse + verify)" "$MIMI" zone check "$dir/z.zone" --trust "$dir/trust.toml"
mimi_check=$(cat "$dir/last")
grep -E "parsed|verified" "$dir/out" | tail -n 2 | sed 's/^/    /'
parse=$(sed -n 's/.*parsed in \([0-9.]*\) s.*/\1/p' "$dir/out")
measure "mimi zone export --generic" "$MIMI" zone export "$dir/z.zone" --generic --out "$dir/g.zone"
measure "kzonecheck (generic form)" kzonecheck -o 5.5.5.1.e164.mimi.arpa. "$dir/g.zone"
knot=$(cat "$dir/last")
measure "mimi zone check on generic form" "$MIMI" zone check "$dir/g.zone" --trust "$dir/trust.toml"
python3 - "$knot" "$parse" "$mimi_check" <<'PY'
import sys
knot, parse, check = map(float, sys.argv[1:])
print(f"ratio kzonecheck / mimi parse:         {knot / max(parse, 0.01):5.2f}  (above 1.0: mimi parses faster)")
print(f"ratio kzonecheck / mimi parse + verify: {knot / max(check, 0.01):5.2f}  (mimi also verifies every Ed25519 signature)")
PY
