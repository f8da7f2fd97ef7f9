#!/usr/bin/env python3
"""Cost model of the whole discovery system (docs/scale.md).

Reads the per-operation costs that tools/scale/measure.sh measured on one machine
(tools/scale/measured.json) and multiplies them out to a deployment: by default 10^9 users
who each look up 300 contacts a day, 10^10 mappings in 10^4 shards on 10^4 DPs. For four
ways of serving lookups it computes CPU (cores busy all day), bandwidth (bytes a day and
average Gbit/s, DP egress and ingress) and storage:

  a. public lookups only,
  b. private lookups by PIR only (OPRF + two MulPIR queries per probe),
  c. encrypted replicas for the largest APs, PIR for the rest,
  d. c with daily incremental sync (new contacts only, a full sync every N days).

Prints Markdown (for docs/scale.md) on stdout and writes a bar chart of DP cores per
scenario as plain SVG. Standard library only.

Usage: python3 tools/scale/model.py [measured.json] [--hit 0.5] [--svg docs/scale.svg] ...
       (--help lists every assumption and its default)
"""

import argparse
import json
import math
import sys

DAY = 86400.0


# --- formatting -------------------------------------------------------------------------

def si(x, unit="", digits=3):
    """1.23 M, 4.56 TB: three significant digits and an SI prefix."""
    if x is None:
        return "not measured"
    if x == 0:
        return f"0 {unit}".strip()
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.{digits}g} {prefix}{unit}".strip()
    if abs(x) < 1 and unit in ("s",):
        for factor, prefix in ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
            if abs(x) >= factor:
                return f"{x / factor:.{digits}g} {prefix}{unit}"
    return f"{x:.{digits}g} {unit}".strip()


def gbps(bytes_per_day):
    """Average Gbit/s of a daily volume, as text: 0.0107, 10.7, 1,570."""
    g = bytes_per_day * 8 / DAY / 1e9
    return f"{g:,.0f}" if g >= 1000 else f"{g:.3g}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# --- measured inputs --------------------------------------------------------------------

def affine(points):
    """Linear in x: between the two measured points around x, or through the two largest
    when x lies beyond them; proportional to the largest point when there is only one or the
    slope comes out negative (noise). Returns (f, how)."""
    pts = sorted(points)
    if len(pts) >= 2:
        def f(x):
            i = next((i for i in range(1, len(pts)) if x <= pts[i][0]), len(pts) - 1)
            (x0, y0), (x1, y1) = pts[i - 1], pts[i]
            b = (y1 - y0) / (x1 - x0) if x1 > x0 else -1
            return y0 + b * (x - x0) if b > 0 else y1 * x / x1
        return f, "linear in slots through the two nearest measured sizes"
    x0, y0 = pts[-1]
    return (lambda x: y0 * x / x0), "proportional to the largest measured size"


def mulpir_level(slots, bucket_slots, buckets_per_plaintext):
    """MulPIR's expansion depth for a table of `slots` (MulPirLayout::new): the smallest L
    with (2^(L-1))^2 >= plaintexts."""
    plaintexts = math.ceil(math.ceil(slots / bucket_slots) / buckets_per_plaintext)
    level = 1
    while (1 << (level - 1)) ** 2 < plaintexts:
        level += 1
    return level


class Inputs:
    """Every measured figure the model uses, with where it came from."""

    def __init__(self, m, shard_slots, transport):
        self.rows = []  # (what, value, source)
        src = m.get("source", "examples/scale_costs.rs")
        o1, o64 = m["oprf"]["batch_1"], m["oprf"]["batch_64"]
        self.oprf_dp = {1: o1["dp_evaluate_cpu_ns_per_identifier"] * 1e-9,
                        64: o64["dp_evaluate_cpu_ns_per_identifier"] * 1e-9}
        self.oprf_client = {1: o1["client_blind_finalize_cpu_ns_per_identifier"] * 1e-9,
                            64: o64["client_blind_finalize_cpu_ns_per_identifier"] * 1e-9}
        self.oprf_up = {1: o1["request_bytes"], 64: o64["request_bytes"] / o64["identifiers_per_request"]}
        self.oprf_down = {1: o1["response_bytes"], 64: o64["response_bytes"] / o64["identifiers_per_request"]}
        for b, o in ((1, o1), (64, o64)):
            self.rows.append((f"DP CPU per OPRF evaluation, {b} per request", si(self.oprf_dp[b], "s"),
                              f"{src}: thread CPU of `OprfKey::evaluate`, median of {o['requests']} requests, per identifier"))
            self.rows.append((f"client CPU per identifier (blind + finalize), {b} per request",
                              si(self.oprf_client[b], "s"), f"{src}: thread CPU, median"))
            self.rows.append((f"OPRF bytes per identifier up / down, {b} per request",
                              f"{self.oprf_up[b]:.0f} / {self.oprf_down[b]:.0f} B", src))

        pir = m["pir"]
        sizes = sorted(pir["sizes"], key=lambda s: s["slots"])
        doc = pir["documented_2_20"]
        self.bucket_slots = pir["bucket_slots"]
        self.slot_size = pir["slot_size"]
        self.load = pir["load"]
        bpp = sizes[-1]["buckets_per_plaintext"]
        self.shard_slots = shard_slots
        self.shard_level = mulpir_level(shard_slots, self.bucket_slots, bpp)
        for s in sizes:
            self.rows.append((f"PIR server CPU per query, 2^{s['log_slots']} slots (one thread)",
                              si(s["server_cpu_ns_per_query"] * 1e-9, "s"),
                              f"{src}: thread CPU of `answer` on a one-thread pool, median of {len(s['server_cpu_ns_per_query_samples'])} queries"))
            self.rows.append((f"PIR server CPU per lookup, both queries batched, 2^{s['log_slots']}",
                              si(s["server_cpu_ns_per_batched_pair"] * 1e-9, "s"), f"{src}: `answer_batch`, median"))
        f, how = affine([(s["slots"], s["server_cpu_ns_per_query"] * 1e-9) for s in sizes])
        self.pir_query = f(shard_slots)
        self.pir_how = how
        if len(sizes) < 2:
            print(f"warning: PIR cost from one size only ({how}); run measure.sh without --quick",
                  file=sys.stderr)
        fp, _ = affine([(s["slots"], s["server_cpu_ns_per_batched_pair"] * 1e-9) for s in sizes])
        self.pir_pair = fp(shard_slots)
        self.pir_query_doc = doc["server_cpu_ns_per_query"] * 1e-9 * shard_slots / 2 ** doc["log_slots"]
        self.rows.append((f"PIR server CPU per query at {shard_slots:,} slots (the model's shard)",
                          si(self.pir_query, "s"), f"from the sizes above, {how}"))
        self.rows.append(("PIR server CPU per query, 2^20, documented (cross-check)", si(doc["server_cpu_ns_per_query"] * 1e-9, "s"),
                          f"{doc['source']}; this run's sizes extrapolated to 2^20 give {si(f(2 ** 20), 's')}; "
                          f"the documented figure scaled linearly to the shard: {si(self.pir_query_doc, 's')}"))
        big = sizes[-1]
        self.pir_q_bytes, self.pir_r_bytes = big["query_bytes"], big["response_bytes"]
        self.rows.append(("PIR query / response bytes", f"{self.pir_q_bytes:,} / {self.pir_r_bytes:,} B",
                          f"{src} (the same at every size; documented 2^20: {doc['query_bytes']:,} / {doc['response_bytes']:,})"))
        # Keys grow by one Galois key per expansion level: linear in the level.
        fk, _ = affine([(s["expansion_level"], s["eval_key_bytes"]) for s in sizes]
                       + [(doc["expansion_level"], doc["eval_key_bytes"])])
        self.key_bytes = fk(self.shard_level)
        self.rows.append((f"evaluation key bytes at expansion level {self.shard_level} (the shard's)",
                          si(self.key_bytes, "B"),
                          f"{src} at levels {', '.join(str(s['expansion_level']) for s in sizes)} and the documented 2^20 run (level 9), linear in the level"))
        ratio = self.key_bytes / big["eval_key_bytes"]
        self.key_mem = big["server_key_memory_bytes"] * (self.shard_level + 1) / (big["expansion_level"] + 1)
        self.key_parse = big["server_key_parse_cpu_ns"] * 1e-9 * ratio
        self.keygen = big["client_keygen_cpu_ns"] * 1e-9 * ratio
        self.rows.append(("DP memory per parsed evaluation key", si(self.key_mem, "B"),
                          f"{src} (`key_memory_bytes` at 2^{big['log_slots']}, scaled to the level)"))
        self.rows.append(("DP CPU per key parse / client CPU per key generation",
                          f"{si(self.key_parse, 's')} / {si(self.keygen, 's')}",
                          f"{src} at 2^{big['log_slots']}, scaled by key size"))
        self.client_query = big["client_query_cpu_ns"] * 1e-9
        self.client_decode = big["client_decode_cpu_ns"] * 1e-9
        self.rows.append(("client CPU per PIR query + decode", f"{si(self.client_query, 's')} + {si(self.client_decode, 's')}",
                          f"{src} at 2^{big['log_slots']}"))
        self.local = big["replica_local_lookup_cpu_ns"] * 1e-9
        self.rows.append(("AP CPU per lookup in a replica (keywords + open the slot of two buckets)",
                          si(self.local, "s"), f"{src}: `probe` + `open_buckets`, median"))
        fb, how_b = affine([(s["slots"], s["build_cpu_ns"] * 1e-9) for s in sizes])
        self.build = fb(shard_slots)
        fm, _ = affine([(s["slots"], s["db_memory_bytes"]) for s in sizes])
        self.db_mem = fm(shard_slots)
        self.rows.append(("DP CPU per shard build (new epoch: OPRF, sealing, cuckoo, PIR preprocessing)",
                          si(self.build, "s"), f"{src}: process CPU at {', '.join('2^%d' % s['log_slots'] for s in sizes)}, {how_b}"))
        self.rows.append(("DP memory per shard (PIR database + slot table)", si(self.db_mem, "B"),
                          f"{src}: `ZonePirDb::memory_bytes`, {how_b}"))

        r = m["replica"]
        # Measured by tools/scale/simulate.sh (UPDATE_MEASURED=1) through the replica
        # protocol, when it has run: bytes as the resolver received them, DNS framing and
        # TSIG included; else the formula from the slot layout.
        meas = r.get("measured")
        self.replica_send_cpu_per_byte = None
        self.replica_payload = r["replica_message_payload_bytes"]
        self.stored_per_mapping = r["stored_bytes_per_mapping"]
        bucket_wire = r["bucket_slots"] * r["slot_size"] + r["replica_bucket_overhead_bytes"]
        formula = (f"({r['bucket_slots']} x {r['slot_size']} B + replica_bucket_overhead_bytes = {r['replica_bucket_overhead_bytes']}) "
                   f"/ {r['bucket_slots']} / load {r['load']}")
        if meas:
            msrc = f"tools/scale/simulate.sh ({meas['date']}, commit {meas['commit']})"
            self.replica_per_mapping = meas["bytes_per_mapping"]
            self.rows.append(("replica bytes per mapping on the wire", f"{self.replica_per_mapping:.1f} B",
                              f"{msrc}: full downloads of 2^{meas['log_slots']} slots ({meas['mappings']:,} mappings), bytes the "
                              f"resolver received (DNS framing and TSIG included) / mappings; the formula {formula} gives "
                              f"{r['replica_bytes_per_mapping']:.1f} B"))
            self.replica_send_cpu_per_byte = meas["dp_cpu_s_per_byte_download"]
            self.rows.append(("DP CPU per replica byte sent", si(self.replica_send_cpu_per_byte, "s"),
                              f"{msrc}: `mimi dp serve`'s CPU (/proc/PID/stat) over the full downloads / bytes; "
                              "deltas priced at the same rate (the same SLOTS run code)"))
        else:
            self.replica_per_mapping = r["replica_bytes_per_mapping"]
            self.rows.append(("replica bytes per mapping on the wire", f"{self.replica_per_mapping:.1f} B",
                              f"{formula}; replica_message_payload_bytes = {r['replica_message_payload_bytes']}: "
                              "parameters (tools/scale/simulate.sh measures them)"))
        self.rows.append(("replica bytes per mapping stored", f"{self.stored_per_mapping:.1f} B", "slot size / load"))
        self.shard_messages = math.ceil(math.ceil(shard_slots / r["bucket_slots"]) / (self.replica_payload // bucket_wire))
        self.rows.append(("DNS messages per shard download", f"{self.shard_messages:,}",
                          f"{self.replica_payload // bucket_wire} buckets of {bucket_wire} B per {self.replica_payload:,}-B message"
                          + ("" if meas else "; the DNS framing of each message (header, question, record header) is not counted")))
        d = m["delta"]
        self.update_cpu = d["dp_update_cpu_ns_per_change"] * 1e-9
        kinds = ", ".join(f"{k} {v['buckets_touched_per_change']:.2f}" for k, v in sorted(d["by_kind"].items()))
        self.rows.append(("buckets touched per changed mapping", f"{d['buckets_touched_per_change']:.2f}",
                          f"{src}: `ZonePirDb::update` of {d['changes']} single changes on 2^{d['log_slots']} ({kinds})"))
        if meas:
            self.delta_bytes = meas["delta_bytes_per_change"]
            self.rows.append(("delta bytes per changed mapping", f"{self.delta_bytes:.0f} B",
                              f"{msrc}: one delta per AP after a day of {meas['changes_per_refresh']:,} changes (replace, withdraw, "
                              f"add in turn) to {meas['mappings']:,} mappings, bytes received / changes "
                              f"({meas['delta_buckets_per_change']:.2f} buckets each); buckets touched x 1,028 B gives "
                              f"{d['delta_bytes_per_change']:.0f} B"))
        else:
            self.delta_bytes = d["delta_bytes_per_change"]
            self.rows.append(("delta bytes per changed mapping", f"{self.delta_bytes:.0f} B",
                              f"buckets touched x {d['bucket_bytes_on_wire']} B"))
        self.rows.append(("DP CPU per changed mapping (in-place update)", si(self.update_cpu, "s"),
                          f"{src}: thread CPU of `update`, median"))

        pq = m.get("public_query") or {}
        q = pq.get(transport) if pq.get("measured") else None
        if q:
            self.public = q["dp_cpu_ns_per_query"] * 1e-9
            self.public_up, self.public_down = q["request_bytes"], q["response_bytes"]
            self.rows.append((f"DP CPU per public query ({transport})", si(self.public, "s"),
                              f"{pq['source']}; {q['queries_completed']:,} queries in {pq['seconds_per_mode']} s against {pq['mappings']:,} mappings"))
            self.rows.append(("public query / response bytes (DNS payload)", f"{q['request_bytes']:.0f} / {q['response_bytes']:.0f} B",
                              "dnsperf averages"))
        else:
            self.public = self.public_up = self.public_down = None
            self.rows.append((f"DP CPU per public query ({transport})", "not measured",
                              "dnsperf was missing when measure.sh ran"))
        self.dp_mem_per_mapping = pq.get("dp_rss_bytes_per_mapping") if pq.get("measured") else None
        if self.dp_mem_per_mapping:
            self.rows.append(("DP memory per mapping, public zone", si(self.dp_mem_per_mapping, "B"),
                              f"RSS of `mimi dp serve` after the run / {pq['mappings']:,} mappings (includes the process's baseline)"))


# --- the model ---------------------------------------------------------------------------

class Result:
    def __init__(self, name):
        self.name = name
        self.dp_cpu = {}      # component -> CPU seconds a day (whole system)
        self.ap_cpu = {}
        self.egress = {}      # DP egress bytes a day
        self.ingress = {}
        self.dp_store = {}    # bytes
        self.ap_store = {}
        self.ap_ingress = {}  # bytes a day for each replicating AP
        self.unmeasured = []  # components the model cannot price

    def total(self, d):
        vals = list(d.values())
        return None if any(v is None for v in vals) else sum(vals)

    def partial(self, d, unit):
        """The sum of what is measured, flagged when a part is not."""
        known = [v for v in d.values() if v is not None]
        if not known:
            return "not measured"
        text = si(sum(known), unit)
        return text + " + not measured" if len(known) < len(d) else text


def scenario(kind, p, x, hit):
    """kind: a, b, c, d. p: assumptions; x: Inputs; hit: AP cache hit rate."""
    names = {"a": "a. public only", "b": "b. PIR only", "c": "c. replicas + PIR", "d": "d. c + incremental sync"}
    r = Result(names[kind])
    users, mappings, shards = p.users, p.mappings, p.shards
    # Identifiers looked up a day, and at which OPRF batch size.
    if kind == "d":
        batches = {1: users * p.new_contacts, 64: users * p.contacts / p.full_sync_days}
    else:
        batches = {64: users * p.contacts}
    misses = {b: n * (1 - hit) for b, n in batches.items()}
    lookups = sum(misses.values())
    if p.dp_public_memory:
        r.dp_store["public zones"] = mappings * x.dp_mem_per_mapping if x.dp_mem_per_mapping else None

    if kind == "a":
        queries = lookups * p.queries_per_lookup
        if x.public is None:
            r.dp_cpu["public queries"] = None
            r.egress["public answers"] = r.ingress["public queries"] = None
        else:
            r.dp_cpu["public queries"] = queries * x.public
            r.egress["public answers"] = queries * x.public_down
            r.ingress["public queries"] = queries * x.public_up
        r.unmeasured.append("the AP resolver's CPU per public lookup")
        return r

    share = 0.0 if kind == "b" else p.replicating_share
    pir_aps = p.aps if kind == "b" else p.aps - p.replicating_aps
    pir_lookups = lookups * (1 - share)
    queries = pir_lookups * 2 * p.probes
    # Every private lookup, replica or PIR, starts with an OPRF evaluation by the DP.
    r.dp_cpu["OPRF evaluations"] = sum(n * x.oprf_dp[b] for b, n in misses.items())
    r.ap_cpu["OPRF blind + finalize"] = sum(n * x.oprf_client[b] for b, n in misses.items())
    r.ingress["OPRF requests"] = sum(n * x.oprf_up[b] for b, n in misses.items())
    r.egress["OPRF responses"] = sum(n * x.oprf_down[b] for b, n in misses.items())
    pir_cpu = x.pir_pair / 2 if p.batched_pair else x.pir_query
    r.dp_cpu["PIR queries"] = queries * pir_cpu
    r.ap_cpu["PIR query + decode"] = queries * (x.client_query + x.client_decode)
    r.ingress["PIR queries"] = queries * x.pir_q_bytes
    r.egress["PIR responses"] = queries * x.pir_r_bytes
    # Fresh evaluation keys per AP, zone and epoch; one key serves every shard of its zone.
    zones = shards / p.shards_per_zone
    uploads = pir_aps * zones / p.epoch_days
    r.dp_cpu["PIR key parses"] = uploads * x.key_parse
    r.ap_cpu["PIR key generation"] = uploads * x.keygen
    r.ingress["PIR key uploads"] = uploads * x.key_bytes
    r.dp_store["PIR keys (every PIR AP in every zone)"] = pir_aps * zones * x.key_mem
    r.dp_cpu["epoch rebuilds"] = shards * x.build / p.epoch_days
    changes = mappings * p.change_rate
    r.dp_cpu["in-place updates"] = changes * x.update_cpu
    r.dp_store["PIR databases + slot tables"] = shards * x.db_mem
    if kind in ("c", "d"):
        reps = p.replicating_aps
        r.ap_cpu["replica lookups"] = lookups * share * x.local
        per_ap = mappings * x.replica_per_mapping
        r.egress[f"replica downloads ({si(per_ap, 'B')} per AP per epoch)"] = reps * per_ap / p.epoch_days
        r.egress[f"replica deltas ({si(changes * x.delta_bytes, 'B')} per AP a day)"] = reps * changes * x.delta_bytes
        r.ap_ingress["downloads + deltas"] = per_ap / p.epoch_days + changes * x.delta_bytes
        r.ap_store[f"replicas ({si(mappings * x.stored_per_mapping, 'B')} per replicating AP)"] = reps * mappings * x.stored_per_mapping
        if x.replica_send_cpu_per_byte is None:
            r.unmeasured.append("the DP's CPU for sending replica downloads and deltas")
        else:
            sent = reps * (per_ap / p.epoch_days + changes * x.delta_bytes)
            r.dp_cpu["sending replica downloads and deltas"] = sent * x.replica_send_cpu_per_byte
    return r


# --- output ------------------------------------------------------------------------------

def svg_bars(path, bars, title):
    """Bar chart, log scale: bars = [(label, value or None, colour)]; "\n" breaks a label."""
    known = [v for _, v, _ in bars if v]
    lo = 10 ** math.floor(math.log10(min(known)))
    hi = 10 ** math.ceil(math.log10(max(known)))
    if hi == lo:
        hi *= 10
    w, h, left, right, top, bottom = 760, 400, 80, 20, 40, 70
    ph = h - top - bottom
    y = lambda v: top + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        yy = y(10 ** e)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{w - right}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">1e{e}</text>')
        e += 1
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>')
    slot = (w - left - right) / len(bars)
    for i, (label, v, colour) in enumerate(bars):
        x0 = left + i * slot + slot * 0.2
        bw = slot * 0.6
        cx = x0 + bw / 2
        if v:
            yy = y(v)
            out.append(f'<rect x="{x0:.1f}" y="{yy:.1f}" width="{bw:.1f}" height="{top + ph - yy:.1f}" fill="{colour}"/>')
            out.append(f'<text x="{cx:.1f}" y="{yy - 5:.1f}" text-anchor="middle">{si(v)}</text>')
        else:
            out.append(f'<text x="{cx:.1f}" y="{top + ph - 5:.1f}" text-anchor="middle">not measured</text>')
        for j, part in enumerate(label.split("\n")):
            out.append(f'<text x="{cx:.1f}" y="{top + ph + 18 + 14 * j:.1f}" text-anchor="middle">{part}</text>')
    out.append(f'<text transform="translate(18,{top + ph / 2}) rotate(-90)" text-anchor="middle">DP cores (log scale)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("measured", nargs="?", default="tools/scale/measured.json")
    ap.add_argument("--users", type=float, default=1e9)
    ap.add_argument("--contacts", type=float, default=300, help="contacts each user looks up a day (a full sync)")
    ap.add_argument("--mappings", type=float, default=1e10)
    ap.add_argument("--shards", type=float, default=1e4, help="PIR shards (one PIR database each)")
    ap.add_argument("--shards-per-zone", type=float, default=1, help="shards of one zone share a client's evaluation key")
    ap.add_argument("--dps", type=float, default=1e4)
    ap.add_argument("--hit", type=float, default=0.5, help="AP cache hit rate: lookups that never reach a DP")
    ap.add_argument("--queries-per-lookup", type=float, default=3, help="public DNS queries of a cache-missing lookup")
    ap.add_argument("--probes", type=int, default=1, help="spill indexes every private lookup fetches")
    ap.add_argument("--batched-pair", action="store_true", help="both bucket queries of a lookup in one pass (answer_batch)")
    ap.add_argument("--aps", type=float, default=1e4, help="app providers (each one PIR client per shard)")
    ap.add_argument("--replicating-aps", type=float, default=100, help="the largest APs, which hold replicas of every shard")
    ap.add_argument("--replicating-share", type=float, default=0.9, help="share of users at the replicating APs")
    ap.add_argument("--zipf", type=float, default=None, help="instead of --replicating-share: AP sizes Zipf(s) and the share of the largest --replicating-aps")
    ap.add_argument("--epoch-days", type=float, default=30, help="OPRF key rotation: new keys, rebuilds, replica downloads")
    ap.add_argument("--change-rate", type=float, default=0.01, help="share of mappings changed a day")
    ap.add_argument("--new-contacts", type=float, default=2, help="scenario d: new contacts per user a day")
    ap.add_argument("--full-sync-days", type=float, default=30, help="scenario d: a full sync every N days")
    ap.add_argument("--transport", choices=("udp", "tcp"), default="udp", help="public-query figure to use")
    ap.add_argument("--pir-source", choices=("extrapolated", "documented"), default="extrapolated",
                    help="PIR CPU per query: this run's extrapolation or the documented 2^20 figure")
    ap.add_argument("--no-dp-public-memory", dest="dp_public_memory", action="store_false",
                    help="leave the public zones out of DP storage")
    ap.add_argument("--svg", default="docs/scale.svg")
    p = ap.parse_args()
    if p.zipf is not None:
        h = lambda n: sum(1 / k ** p.zipf for k in range(1, int(n) + 1))
        p.replicating_share = h(p.replicating_aps) / h(p.aps)

    m = json.load(open(p.measured))
    shard_slots = math.ceil(p.mappings / p.shards / m["pir"]["load"])
    x = Inputs(m, shard_slots, p.transport)
    if p.pir_source == "documented":
        x.pir_query = x.pir_query_doc
    host = m.get("host", {})

    print(f"Measured on: {host.get('description', 'unknown host')}; load {host.get('load_before', '?')} before, "
          f"{host.get('load_after', '?')} after; {host.get('date', '?')}, commit {host.get('commit', '?')} "
          f"(`{p.measured}`).\n")
    print("### Measured inputs\n")
    print(table(["input", "value", "source"], x.rows))
    print("\n### Assumptions\n")
    lookups = p.users * p.contacts
    assumptions = [
        ("users", si(p.users)),
        ("contacts looked up per user a day (full sync)", f"{p.contacts:g}"),
        ("lookups a day (users x contacts)", si(lookups)),
        ("mappings", si(p.mappings)),
        ("shards", si(p.shards)),
        ("shards per zone (one OPRF key and one client evaluation key per zone)", f"{p.shards_per_zone:g}"),
        ("DPs", si(p.dps)),
        ("slots per shard (mappings / shards / load)", f"{shard_slots:,} (2^{math.log2(shard_slots):.2f}; MulPIR expansion level {x.shard_level})"),
        ("AP cache hit rate", f"{p.hit:g}"),
        ("public queries per cache-missing lookup (scenario a)", f"{p.queries_per_lookup:g}"),
        ("PIR probes per private lookup (2 PIR queries each)", f"{p.probes}"),
        ("both bucket queries batched (`answer_batch`)", "yes" if p.batched_pair else "no"),
        ("PIR CPU per query used", f"{p.pir_source}: {si(x.pir_query, 's')}"),
        ("OPRF batch size", "64 per request for full syncs, 1 for scenario d's new contacts"),
        ("app providers", si(p.aps)),
        ("replicating APs (c, d)", f"{p.replicating_aps:g}"),
        ("their share of users", f"{p.replicating_share:.3g}" + (f" (Zipf s = {p.zipf:g})" if p.zipf is not None else "")),
        ("epoch (OPRF key) rotation", f"{p.epoch_days:g} days"),
        ("mappings changed a day", f"{p.change_rate:.3g} x mappings = {si(p.mappings * p.change_rate)}"),
        ("scenario d: new contacts per user a day", f"{p.new_contacts:g}"),
        ("scenario d: full sync every", f"{p.full_sync_days:g} days"),
        ("public-query transport", p.transport),
    ]
    print(table(["assumption", "value"], assumptions))

    results = [scenario(k, p, x, p.hit) for k in "abcd"]
    print(f"\n### Whole system, cache hit rate {p.hit:g}\n")
    rows = []
    for r in results:
        eg, ing = r.total(r.egress), r.total(r.ingress)
        cores = r.total(r.dp_cpu)
        rows.append((r.name,
                     si(cores / DAY if cores is not None else None),
                     si(cores / DAY / p.dps if cores is not None else None),
                     si(r.total(r.ap_cpu) / DAY) if r.ap_cpu else "not measured",
                     f"{si(eg, 'B')}/day = {gbps(eg)} Gbit/s" if eg is not None else "not measured",
                     f"{si(ing, 'B')}/day = {gbps(ing)} Gbit/s" if ing is not None else "not measured",
                     f"{gbps(eg / p.dps)} Gbit/s" if eg is not None else "not measured",
                     r.partial(r.dp_store, "B"),
                     si(sum(v for v in r.dp_store.values() if v is not None) / p.dps, "B"),
                     r.partial(r.ap_store, "B") if r.ap_store else "-"))
    print(table(["scenario", "DP cores", "cores per DP", "AP cores", "DP egress", "DP ingress",
                 "egress per DP", "DP storage (memory)", "storage per DP", "AP storage"], rows))

    print("\n### Where it goes (cache hit rate %g)\n" % p.hit)
    rows = []
    for r in results:
        for what, d, conv in (("DP CPU", r.dp_cpu, lambda v: f"{si(v / DAY)} cores"),
                              ("AP CPU", r.ap_cpu, lambda v: f"{si(v / DAY)} cores"),
                              ("DP egress", r.egress, lambda v: f"{si(v, 'B')}/day ({gbps(v)} Gbit/s)"),
                              ("DP ingress", r.ingress, lambda v: f"{si(v, 'B')}/day ({gbps(v)} Gbit/s)"),
                              ("DP storage", r.dp_store, lambda v: si(v, "B")),
                              ("AP storage", r.ap_store, lambda v: si(v, "B")),
                              ("ingress of one replicating AP", r.ap_ingress,
                               lambda v: f"{si(v, 'B')}/day ({gbps(v)} Gbit/s)")):
            for comp, v in d.items():
                rows.append((r.name, what, comp, "not measured" if v is None else conv(v)))
        for u in r.unmeasured:
            rows.append((r.name, "not modelled", u, "not measured"))
    print(table(["scenario", "cost", "component", "value"], rows))

    print("\n### DP cores by cache hit rate\n")
    hits = (0.0, 0.5, 0.9)
    rows = []
    for k in "abcd":
        cells = []
        for h in hits:
            r = scenario(k, p, x, h)
            t = r.total(r.dp_cpu)
            cells.append(si(t / DAY) if t is not None else "not measured")
        rows.append([scenario(k, p, x, 0).name] + cells)
    print(table(["scenario"] + [f"hit {h:g}" for h in hits], rows))

    print("\n### Cross-checks\n")
    doc = m["pir"]["documented_2_20"]["server_cpu_ns_per_query"] * 1e-9
    xe = Inputs(m, shard_slots, p.transport)  # this run's extrapolation, whatever --pir-source says
    rows = []
    for h in hits:
        issue = lookups * (1 - h) * 2 * doc / DAY
        b = scenario("b", p, xe, h)
        xd = Inputs(m, shard_slots, p.transport)
        xd.pir_query = x.pir_query_doc
        bd = scenario("b", p, xd, h)
        rows.append((f"{h:g}", si(issue), si(b.total(b.dp_cpu) / DAY), si(bd.total(bd.dp_cpu) / DAY)))
    print("The issue: \"one private lookup costs the DP two PIR queries of about 1.26 s of CPU each at "
          "2^20 slots ... on the order of a million cores\". Lookups x 2 x 1.26 s / 86,400 s, beside "
          "scenario b with this run's extrapolation and with the documented 2^20 figure (scaled to "
          f"{shard_slots:,} slots):\n")
    print(table(["cache hit rate", "issue's arithmetic (2 x 1.26 s per lookup)",
                 f"b, this run ({si(xe.pir_query, 's')} per query)", f"b, documented ({si(x.pir_query_doc, 's')} per query)"], rows))

    labels = {"a": "a. public\nonly", "b": "b. PIR only", "c": "c. replicas\n+ PIR", "d": "d. c +\nincremental sync"}
    bars = []
    for k, r in zip("abcd", results):
        t = r.total(r.dp_cpu)
        bars.append((labels[k], t / DAY if t is not None else None, "#4a7ab5"))
    xd = Inputs(m, shard_slots, p.transport)
    xd.pir_query = x.pir_query_doc
    bd = scenario("b", p, xd, p.hit)
    bars.insert(2, ("b with the\ndocumented\n2^20 figure", bd.total(bd.dp_cpu) / DAY, "#9db7d8"))
    svg_bars(p.svg, bars, f"DP cores per scenario (10^9 users x {p.contacts:g} contacts/day, cache hit {p.hit:g})")
    print(f"\n(plot: {p.svg})", file=sys.stderr)


if __name__ == "__main__":
    main()
