#!/usr/bin/env bash
# Loopback simulation for the cost model (docs/scale.md, "Simulation"): a scaled-down
# population of users at APs with replicas and at APs using PIR (scenarios c and d), run
# against real DPs, checks the per-operation figures the model multiplies out.
#
# One `mimi dp serve` (a child process: its CPU is utime + stime from /proc/PID/stat) serves
# a carrier zone of 2^LOG_SLOTS 256-byte slots at load 0.9 (16: 58,982 signed mappings, the
# smallest size measure.sh measures), with [pir]; a root DP delegates it. APS APs (default
# 4), each its own [[client]] TSIG identity; examples/scale_sim.rs (its doc says what a day
# holds) runs the population: day 0 downloads and full syncs, then days of changes (DNS
# UPDATE), deltas and new contacts. It writes the figures as JSON (OUT), then this script
# prints them beside the model's inputs (tools/scale/model.py's reading of MEASURED) with
# the ratio.
#
# Usage: tools/scale/simulate.sh [LOG_SLOTS] [scale_sim flags...]
#   default 16, 200 users of 20 contacts, 2 replicating APs with 90 % of them and 2 PIR
#   APs, 2 days (about 5 minutes here, most of it the PIR users' lookups);
#   flags: --users, --contacts, --replica-aps, --replica-share, --days, --change-rate,
#   --new, --zipf, ... (examples/scale_sim.rs --help).
#   env: APS (4), OUT (tools/scale/simulated.json), MEASURED (tools/scale/measured.json),
#   UPDATE_MEASURED=1 (write the measured replica bytes and DP CPU into MEASURED's
#   "replica" section, which model.py then uses instead of its parameters), KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
LOG_SLOTS=${1:-16}
shift $(($# < 1 ? $# : 1))
APS=${APS:-4}
OUT=$(realpath -m "${OUT:-tools/scale/simulated.json}")
MEASURED=$(realpath "${MEASURED:-tools/scale/measured.json}")
REPO=$PWD
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --features mulpir --bin mimi --example scale_sim
MIMI=$(realpath "$TARGET/release/mimi")
SIM=$(realpath "$TARGET/release/examples/scale_sim")
for t in dig python3; do command -v $t >/dev/null || { echo "simulate.sh: needs $t" >&2; exit 1; }; done
scratch_start simulate.sh
d=$W
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $load_before"

RA=127.0.0.151 MA=127.0.0.152
AREA=555
N=$(python3 -c "print(int(0.9 * 2 ** $LOG_SLOTS))")
t0=$(date +%s)
cd "$d"
ORIGIN=$(carrier_zone . $AREA "$N" $MA)
"$MIMI" zone new mimi.arpa. --out root.zone --ns ns1.mimi.arpa.=$RA >/dev/null
"$MIMI" zone delegate root.zone --child "$ORIGIN" --ns "ns1.$ORIGIN=$MA" >/dev/null
tsig_key chat-update. chat.tsig
clients="" keys=""
for ((i = 0; i < APS; i++)); do
  tsig_key "ap$i-query." "ap$i.tsig"
  clients+=$(printf '[[client]]\nprovider = "ap%s.example."\ntsig = "ap%s.tsig"\nlookups_per_day = "unlimited"\n' $i $i)$'\n'
  keys+="${keys:+,}ap$i.tsig"
done
PORT=$(free_port $RA $MA)
mkdir -p journal
cat >dp.toml <<EOF
listen = ["$MA:$PORT"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"  # the simulation's SOA checks are anonymous
$clients
[[update]]
provider = "chat.example"
tsig = "chat.tsig"
[updates]
per_second = 1000000
burst = 1000000
[journal]
dir = "journal"
# No zone-file rewrite during the run: it would count in the DP's CPU.
flush_interval_secs = 86400
flush_changes = 100000000
[pir]
scheme = "mulpir"  # the README and docs/scale.md figures of this script were measured with MulPIR
threads = 1  # one PIR thread, as the model's per-query figure
[[zone]]
origin = "$ORIGIN"
file = "$AREA.zone"
EOF
cat >root.toml <<EOF
listen = ["$RA:$PORT"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"
$clients
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
[pir]  # its PIRCFG lists the delegated block, so a private walk goes straight to it
scheme = "mulpir"  # the README and docs/scale.md figures of this script were measured with MulPIR
EOF
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config root.toml 2>root.log &
pids+=($!)
wait_pircfg $RA "$PORT" mimi.arpa. $! root.log 60
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config dp.toml 2>dp.log &
DPID=$!
pids+=("$DPID")
wait_pircfg $MA "$PORT" "$ORIGIN" "$DPID" dp.log
echo "== DP up after $(($(date +%s) - t0)) s: $N mappings, 2^$LOG_SLOTS slots; $APS APs"

"$SIM" --port "$PORT" --root $RA --dp $MA --dp-pid "$DPID" --trust trust.toml \
  --ap-tsig "$keys" --update-tsig chat.tsig --key chat.key \
  --area $AREA --mappings "$N" --log-slots "$LOG_SLOTS" --work "$d" "$@" >sim.json
cd "$REPO"
python3 - "$d/sim.json" "$OUT" "$MEASURED" "$load_before" "${UPDATE_MEASURED:-}" <<'PY'
import json, subprocess, sys, time
sys.path.insert(0, "tools/scale")
import model  # the model's own reading of measured.json

simf, out, measured, load_before, update = sys.argv[1:]
sim = json.load(open(simf))
sim["host_load"] = {"before": load_before, "after": " ".join(open("/proc/loadavg").read().split()[:3])}
sim["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
sim["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
with open(out, "w") as f:
    json.dump(sim, f, indent=2, sort_keys=True)
    f.write("\n")

m = json.load(open(measured))
slots = sim["zone"]["slots"]
x = model.Inputs(m, slots, "udp")
pop, rl, pl = sim["population"], sim["replica_lookups"], sim["pir_lookups"]
dl, de, up = sim["download"], sim["deltas"], sim["updates"]
mappings = sim["zone"]["mappings"]
full, new = rl["full_sync"], rl["new"]
si = model.si
rows = []
def row(what, s, mv, fmt, source):
    ratio = f"{s / mv:.2f}" if (s is not None and mv) else "-"
    rows.append((what, fmt(s) if s is not None else "-", fmt(mv) if mv is not None else "not in the model", ratio, source))
sec = lambda v: si(v, "s")
byt = lambda v: f"{v:,.1f} B"
row(f"DP CPU per OPRF-evaluated identifier, full syncs at replicating APs (mean {full['mean_batch']:.1f} per request)",
    rl["dp_cpu_s_per_evaluated_full_sync"], x.oprf_dp[64], sec,
    "`OprfKey::evaluate` alone, 64 per request (the model's figure for full syncs)")
if new["evaluated"]:
    row(f"DP CPU per OPRF-evaluated identifier, new contacts (mean {new['mean_batch']:.1f} per request)",
        rl["dp_cpu_s_per_evaluated_new"], x.oprf_dp[1], sec,
        "`OprfKey::evaluate` alone, 1 per request (the model's figure for scenario d's new contacts)")
row(f"DP CPU per PIR query, 2^{sim['zone']['log_slots']} slots ({pl['queries']:,} queries; with the lookups' OPRF and key uploads)",
    pl["dp_cpu_s_per_query"], x.pir_query, sec, f"one-thread `answer`, {x.pir_how}")
r = m["replica"]
row("replica bytes per mapping, full download", dl["bytes_per_mapping"], r["replica_bytes_per_mapping"], byt,
    f"(4 x 256 + {r['replica_bucket_overhead_bytes']}) / 4 / 0.9: a parameter of the model (no DNS framing)")
row(f"delta bytes per changed mapping ({pop['change_rate']:g} of the mappings a day, one refresh per AP a day)",
    de["bytes_per_change"], m["delta"]["delta_bytes_per_change"], byt,
    f"`ZonePirDb::update` at 2^{m['delta']['log_slots']}: buckets touched x 1,028 B")
row("buckets per changed mapping in a delta", de["buckets_per_change"], m["delta"]["buckets_touched_per_change"],
    lambda v: f"{v:.2f}", "buckets touched per `ZonePirDb::update` (each change counted alone)")
row("DP CPU per changed mapping (DNS UPDATE, journal, PIR update)", up["dp_cpu_s_per_change"], x.update_cpu, sec,
    "thread CPU of `ZonePirDb::update` alone")
lo = sim["local_lookup"]
row(f"AP CPU per replica lookup after the OPRF (`ZoneReplica::lookup`, p50 of {lo['calls']:,})", lo["p50_s"], x.local, sec,
    "`probe` + `open_buckets`, median of 5 (thread CPU)")
row("AP resolver CPU per replica lookup (this process's CPU / identifiers evaluated)", rl["client_cpu_s_per_evaluated"],
    x.oprf_client[64] + x.local, sec, "OPRF blind + finalize (64 per request) + the local lookup")
tick = sim["dp_clock_tick_s"]
row(f"DP CPU per replica download, per mapping ({dl['dp_cpu_s_per_download'] * dl['downloads'] / tick:.0f} clock ticks in all)",
    dl["dp_cpu_s_per_download"] / mappings, None, sec, "-")
row(f"DP CPU per delta, per changed mapping and replicating AP ({de['dp_cpu_s'] / tick:.0f} clock ticks in all)",
    de["dp_cpu_s_per_change"], None, sec, "-")
row("AP cache hit rate, replicating APs (cached replica answers)", rl["hit_rate"], 0.5, lambda v: f"{v:.3f}",
    "an assumption (`--hit`), applied to every lookup")
row("AP cache hit rate, PIR APs", pl["hit_rate"], 0.5, lambda v: f"{v:.3f}",
    "an assumption (`--hit`), applied to every lookup")
# The simulated lookups priced with the model's inputs, the model's way (full syncs at the
# 64-per-request OPRF figure, new contacts at the 1-per-request one), against the DP CPU
# the simulation measured for them.
predicted = ((full["evaluated"] + pl["full_sync"]["evaluated"]) * x.oprf_dp[64]
             + (new["evaluated"] + pl["new"]["evaluated"]) * x.oprf_dp[1]
             + pl["queries"] * x.pir_query)
measured_total = (full["cost"]["dp_cpu_s"] + new["cost"]["dp_cpu_s"]
                  + pl["full_sync"]["cost"]["dp_cpu_s"] + pl["new"]["cost"]["dp_cpu_s"])
row("DP CPU of all the simulated lookups", measured_total, predicted, sec,
    "the model's per-operation inputs applied to the simulation's counts")

host = m.get("host", {})
print()
print(f"simulation: {sim['host']}; {sim['date']}, commit {sim['commit']}")
print(f"model inputs: {measured} (measured {host.get('date', '?')}, commit {host.get('commit', '?')})")
print(f"zone: {mappings:,} mappings, 2^{sim['zone']['log_slots']} slots; {pop['users']} users x {pop['contacts']} contacts "
      f"({pop['absent']:g} absent, Zipf {pop['zipf']:g}), {pop['replica_aps']} replicating APs with {pop['replica_share']:g} of the "
      f"users, {pop['pir_aps']} PIR APs; {pop['days']} days ({pop['change_rate']:g} of the mappings changed a day, "
      f"{pop['new']} new contacts per user, a full sync every {pop['full_sync_days']} days)")
print()
print(model.table(["figure", "simulation", "model input", "simulation / model", "model input's source"], rows))
print()
print("lookups: replicating APs {:,} asked, {:,} cache hits, {:,} evaluated by the DP in {:,} OPRF requests; "
      "PIR APs {:,} asked, {:,} PIR queries".format(full["asked"] + new["asked"], full["cache_hits"] + new["cache_hits"],
                                                   full["evaluated"] + new["evaluated"], full["oprf_requests"] + new["oprf_requests"],
                                                   pl["full_sync"]["asked"] + pl["new"]["asked"], pl["queries"]))
if sim["unexpected_answers"]:
    print(f"!! {len(sim['unexpected_answers'])} unexpected answers")
else:
    print("every answer was what the zone held at the time (URIs checked)")
print(f"(figures: {out})")

if update:
    r["measured"] = {
        "source": "tools/scale/simulate.sh (examples/scale_sim.rs): a full download by each replicating AP, "
                  "and one delta per AP a day after the day's changes, bytes received by the resolver "
                  "(DNS framing and TSIG included); DP CPU from /proc/PID/stat",
        "date": sim["date"], "commit": sim["commit"], "host": sim["host"],
        "log_slots": sim["zone"]["log_slots"], "mappings": mappings,
        "bytes_per_mapping": dl["bytes_per_mapping"],
        "delta_bytes_per_change": de["bytes_per_change"],
        "delta_buckets_per_change": de["buckets_per_change"],
        "changes_per_refresh": round(pop["change_rate"] * mappings),
        "dp_cpu_s_per_mapping_download": dl["dp_cpu_s_per_download"] / mappings,
        "dp_cpu_s_per_byte_download": dl["dp_cpu_s_per_download"] * dl["downloads"] / dl["bytes"],
        "dp_cpu_s_per_change_delta": de["dp_cpu_s_per_change"],
    }
    with open(measured, "w") as f:
        json.dump(m, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote the measured replica figures into {measured} (\"replica\": \"measured\")")
PY
