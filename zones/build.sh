#!/usr/bin/env bash
# Rebuilds the demo discovery tree in zones/ with the mimi CLI. The keys in zones/keys/
# are DEMO ONLY (committed on purpose, so the tree is reproducible): never use them
# for real mappings. Run from the repository root:  zones/build.sh
#
# Address plan (all on one DNS port, servers told apart by loopback address):
#   127.53.0.1   mimi.arpa.                    tree root, AP key registry (ap.mimi.arpa.)
#   127.53.0.2   e164.mimi.arpa.
#   127.53.0.3   1.e164.mimi.arpa.             country code 1
#   127.53.0.4   5.5.5.1.e164.mimi.arpa.       a carrier's number block (+1 555 ...)
#   127.53.0.14  second name server of the carrier block
#   127.53.0.5   4.4.e164.mimi.arpa.           country code 44
#   127.53.0.6   email.mimi.arpa.
#   127.53.0.7   example.com.email.mimi.arpa.  the DP for example.com addresses
set -euo pipefail
cd "$(dirname "$0")/.."
MIMI=${MIMI:-target/release/mimi}
[ -x "$MIMI" ] || cargo build --release --quiet
Z=zones
DAYS=3650 # demo mappings stay valid for ten years

for p in chat.example talk.example work.example; do
  [ -f "$Z/keys/$p.key" ] || "$MIMI" key generate --provider "$p" --out "$Z/keys/$p.key" >/dev/null
done
{
  echo "# Trust file of the demo tree: the app providers whose mappings resolvers and DPs accept."
  echo "# DEMO ONLY keys (zones/keys/)."
  for p in chat.example talk.example work.example; do
    echo
    "$MIMI" key public "$Z/keys/$p.key"
  done
} > "$Z/trust.toml.tmp" && mv "$Z/trust.toml.tmp" "$Z/trust.toml"

rm -f "$Z"/*.zone
new() { "$MIMI" zone new "$1" --out "$Z/$2" "${@:3}" >/dev/null; }
new mimi.arpa. root.zone --ns ns1.mimi.arpa.=127.53.0.1
"$MIMI" zone delegate "$Z/root.zone" --child e164.mimi.arpa. --ns ns1.e164.mimi.arpa.=127.53.0.2 >/dev/null
"$MIMI" zone delegate "$Z/root.zone" --child email.mimi.arpa. --ns ns1.email.mimi.arpa.=127.53.0.6 >/dev/null
for p in chat.example talk.example work.example; do
  "$MIMI" zone publish-key "$Z/root.zone" --key "$Z/keys/$p.key" --valid-days $DAYS >/dev/null
done

new e164.mimi.arpa. e164.zone --ns ns1.e164.mimi.arpa.=127.53.0.2
"$MIMI" zone delegate "$Z/e164.zone" --child 1.e164.mimi.arpa. --ns ns1.1.e164.mimi.arpa.=127.53.0.3 >/dev/null
"$MIMI" zone delegate "$Z/e164.zone" --child 4.4.e164.mimi.arpa. --ns ns1.4.4.e164.mimi.arpa.=127.53.0.5 >/dev/null

new 1.e164.mimi.arpa. 1.e164.zone --ns ns1.1.e164.mimi.arpa.=127.53.0.3
"$MIMI" zone delegate "$Z/1.e164.zone" --child 5.5.5.1.e164.mimi.arpa. \
  --ns ns1.5.5.5.1.e164.mimi.arpa.=127.53.0.4 --ns ns2.5.5.5.1.e164.mimi.arpa.=127.53.0.14 >/dev/null
# A number the country-level DP holds itself.
"$MIMI" zone add "$Z/1.e164.zone" --sii "+1 202 555 0100" --ssi mimi://talk.example/u/dana \
  --key "$Z/keys/talk.example.key" --valid-days $DAYS >/dev/null

C="$Z/5.5.5.1.e164.zone"
new 5.5.5.1.e164.mimi.arpa. 5.5.5.1.e164.zone \
  --ns ns1.5.5.5.1.e164.mimi.arpa.=127.53.0.4 --ns ns2.5.5.5.1.e164.mimi.arpa.=127.53.0.14
# One provider.
"$MIMI" zone add "$C" --sii "+1 (555) 111-2222" --ssi mimi://chat.example/u/alice \
  --key "$Z/keys/chat.example.key" --context any --valid-days $DAYS >/dev/null
# Two providers: personal and business.
"$MIMI" zone add "$C" --sii "+1 555 111 3333" --ssi mimi://chat.example/u/bob \
  --key "$Z/keys/chat.example.key" --context personal --priority 10 --valid-days $DAYS >/dev/null
"$MIMI" zone add "$C" --sii "+1 555 111 3333" --ssi mimi://work.example/u/bob.smith \
  --key "$Z/keys/work.example.key" --context business --priority 20 --method enterprise-directory --valid-days $DAYS >/dev/null
# Deliberately expired (in 2025), so `mimi zone check` names it.
"$MIMI" zone add "$C" --sii "+1 555 111 9999" --ssi mimi://talk.example/u/old \
  --key "$Z/keys/talk.example.key" --not-after 2025-01-01T00:00:00Z >/dev/null

new 4.4.e164.mimi.arpa. 4.4.e164.zone --ns ns1.4.4.e164.mimi.arpa.=127.53.0.5
"$MIMI" zone add "$Z/4.4.e164.zone" --sii "+44 20 7946 0000" --ssi mimi://talk.example/u/emma \
  --key "$Z/keys/talk.example.key" --valid-days $DAYS --method voice-otp >/dev/null

new email.mimi.arpa. email.zone --ns ns1.email.mimi.arpa.=127.53.0.6
"$MIMI" zone delegate "$Z/email.zone" --child example.com.email.mimi.arpa. \
  --ns ns1.example.com.email.mimi.arpa.=127.53.0.7 >/dev/null

new example.com.email.mimi.arpa. example.com.email.zone --ns ns1.example.com.email.mimi.arpa.=127.53.0.7
"$MIMI" zone add "$Z/example.com.email.zone" --sii hugh@example.com --ssi mimi://chat.example/u/hugh \
  --key "$Z/keys/chat.example.key" --valid-days $DAYS >/dev/null
"$MIMI" zone add "$Z/example.com.email.zone" --sii Carol@Example.COM --ssi mimi://work.example/u/carol \
  --key "$Z/keys/work.example.key" --context business --valid-days $DAYS >/dev/null

for f in "$Z"/*.zone; do
  "$MIMI" zone check "$f" --trust "$Z/trust.toml" | grep -v "parsed in" || true
done
