#!/usr/bin/env python3
"""Helpers for bench/run (standard library only).

    tools.py body PATIENT_JSON OUT            the POST body: PATIENT_JSON, minified
    tools.py seed HOST PORT BASE_PATH BODY N  PUT Patient/bench-0 .. bench-(N-1)
    tools.py pgbench NAME CLIENTS STDOUT LOG_PREFIX [ROUND]
                                              one result line from a pgbench run
    tools.py wrk NAME CLIENTS WRK_JSON [ROUND [USER0 SYS0 USER1 SYS1 CLK_TCK]]
                                              one result line from a wrk run, with
                                              the server's CPU ticks before and after
    tools.py report RUN_DIR [README]          the results as Markdown; with README,
                                              also replaces its results section
    tools.py index-insert DB ID TEMPLATE OUT  TEMPLATE (bench/pg/insert.sql) with the
                                              search index rows of Patient/ID added,
                                              as the server writes them for the document
"""

import glob
import http.client
import json
import re
import statistics
import subprocess
import sys

from benchlib import write_section

SERVER_READ = "server read"
SERVER_CREATE = "server create"
PG_SELECT = "pg select"
PG_INSERT = "pg insert"

READ_TARGET = 0.50
CREATE_TARGET = 0.40
IDLE_RSS_TARGET_MB = 50

BEGIN = "<!-- results:begin (written by bench/run) -->"
END = "<!-- results:end -->"


def body(src, out):
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    with open(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))


def seed(host, port, base_path, body_file, n):
    with open(body_file, encoding="utf-8") as f:
        doc = json.load(f)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for i in range(int(n)):
        doc["id"] = f"bench-{i}"
        data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        conn.request(
            "PUT",
            f"{base_path}/Patient/bench-{i}",
            body=data,
            headers={
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
            },
        )
        resp = conn.getresponse()
        text = resp.read()
        if resp.status not in (200, 201):
            sys.exit(f"PUT Patient/bench-{i}: {resp.status} {text[:500]!r}")
    conn.close()


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def pgbench(name, clients, stdout_file, log_prefix, rnd="1"):
    with open(stdout_file, encoding="utf-8") as f:
        out = f.read()
    m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", out, re.M)
    if not m:
        sys.exit(f"{stdout_file}: no tps line")
    tps = float(m.group(1))
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    # Per-transaction log lines:
    # client_id transaction_no time_us script_no time_epoch time_us_part [lag...]
    latencies = []
    for path in glob.glob(log_prefix + ".*"):
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
    latencies.sort()
    row = {
        "name": name,
        "clients": int(clients),
        "round": int(rnd),
        "rps": tps,
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 50) / 1000,
        "p99_ms": percentile(latencies, 99) / 1000,
        "errors": int(failed.group(1)) if failed else 0,
    }
    print(json.dumps(row))


def wrk(name, clients, wrk_json, rnd="1", user0=None, sys0=None, user1=None, sys1=None,
        clk_tck="100"):
    with open(wrk_json, encoding="utf-8") as f:
        r = json.load(f)
    cpu = {}
    if user0 is not None and r["requests"]:
        per_req = 1e6 / int(clk_tck) / r["requests"]
        cpu = {
            "cpu_user_us": (int(user1) - int(user0)) * per_req,
            "cpu_sys_us": (int(sys1) - int(sys0)) * per_req,
        }
    row = {
        "name": name,
        "clients": int(clients),
        "round": int(rnd),
        "rps": r["rps"],
        "requests": r["requests"],
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "errors": r["errors"] + r["non_2xx"],
        **cpu,
    }
    print(json.dumps(row))


def fmt_rate(v):
    return f"{v:,.0f}"


def fmt_ms(v):
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def median(values):
    return statistics.median(values) if values else float("nan")


def report(run_dir, readme=None):
    # (name, clients) -> {round: row}
    runs = {}
    with open(f"{run_dir}/results.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs.setdefault((r["name"], r["clients"]), {})[r.get("round", 1)] = r
    with open(f"{run_dir}/meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    clients = sorted({c for (_, c) in runs})
    rounds = meta.get("rounds", 1)

    def agg(name, c, key):
        return median([r[key] for r in runs.get((name, c), {}).values()])

    def ratio(num, den, c):
        """Median over the rounds of num/den, each round's pair taken together; and
        the lowest and highest of them."""
        a, b = runs.get((num, c), {}), runs.get((den, c), {})
        rs = [a[k]["rps"] / b[k]["rps"] for k in a if k in b and b[k]["rps"]]
        return (median(rs), min(rs), max(rs)) if rs else None

    out = []
    out.append(f"Run of {meta['date']} on {meta['machine']}.")
    out.append("")
    out.append(
        f"{meta['duration']} s per measurement"
        + (f", {rounds} rounds (medians; the ratio is the median of the rounds' ratios, "
           "lowest–highest in brackets)" if rounds > 1 else "")
        + f"; {meta['ids']} pre-created Patients read "
        f"at random; a {meta['body_bytes']}-byte Patient for every create; "
        f"server commit {meta['commit']}; {meta['pg_version']} ({meta['pg_settings']}); "
        f"wrk {meta['wrk_version']}; load average before the run: {meta.get('loadavg', '?')}."
    )

    def section(title, server, raw, target):
        out.append("")
        out.append(f"#### {title}")
        out.append("")
        out.append(
            "| clients | server req/s | server p50 ms | server p99 ms "
            "| PostgreSQL tx/s | PostgreSQL p50 ms | PostgreSQL p99 ms "
            f"| server/PostgreSQL | target ≥ {target:.2f} |"
        )
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
        for c in clients:
            r = ratio(server, raw, c)
            if not r:
                continue
            mid, lo, hi = r
            spread = f" ({lo:.2f}–{hi:.2f})" if rounds > 1 else ""
            verdict = "met" if mid >= target else "**not met**"
            out.append(
                f"| {c} | {fmt_rate(agg(server, c, 'rps'))} | {fmt_ms(agg(server, c, 'p50_ms'))} "
                f"| {fmt_ms(agg(server, c, 'p99_ms'))} "
                f"| {fmt_rate(agg(raw, c, 'rps'))} | {fmt_ms(agg(raw, c, 'p50_ms'))} "
                f"| {fmt_ms(agg(raw, c, 'p99_ms'))} "
                f"| {mid:.2f}{spread} | {verdict} |"
            )
        cpu = [
            (c, agg(server, c, "cpu_user_us"), agg(server, c, "cpu_sys_us"))
            for c in clients
            if all("cpu_user_us" in r for r in runs.get((server, c), {}).values())
            and runs.get((server, c))
        ]
        if cpu:
            out.append("")
            out.append(
                "Server CPU time per request, user + system µs: "
                + "; ".join(
                    f"{c} client{'s' if c > 1 else ''}: {u:.0f} + {s_:.0f}" for c, u, s_ in cpu
                )
                + "."
            )

    section(
        f"Read: `GET /fhir/Patient/{{id}}` vs `{PG_SELECT}` (primary-key select of the same row)",
        SERVER_READ,
        PG_SELECT,
        READ_TARGET,
    )
    section(
        f"Create: `POST /fhir/Patient` vs `{PG_INSERT}` (the same inserts: resource, history, outbox, search index)",
        SERVER_CREATE,
        PG_INSERT,
        CREATE_TARGET,
    )

    errs = [r for by_round in runs.values() for r in by_round.values() if r["errors"]]
    out.append("")
    if errs:
        out.append(
            "Errors (non-2xx answers, socket errors or failed transactions): "
            + ", ".join(
                f"{r['name']} at {r['clients']} (round {r.get('round', 1)}): {r['errors']}"
                for r in errs
            )
            + "."
        )
    else:
        out.append("No errors: every request was answered 2xx, every transaction committed.")

    mem = meta["memory"]
    out.append("")
    out.append("#### Server memory (VmRSS from /proc/<pid>/status)")
    out.append("")
    out.append(f"| when | VmRSS MB | target ≤ {IDLE_RSS_TARGET_MB} MB |")
    out.append("|---|---:|:---:|")
    for label, key, judged in (
        ("idle, after start-up", "rss_start_kb", True),
        ("idle, after the load", "rss_after_kb", True),
        ("peak (VmHWM) over the run", "hwm_kb", False),
    ):
        mb = mem[key] / 1024
        verdict = ("met" if mb <= IDLE_RSS_TARGET_MB else "**not met**") if judged else "—"
        out.append(f"| {label} | {mb:.1f} | {verdict} |")

    text = "\n".join(out) + "\n"
    if readme:
        write_section(readme, BEGIN, END, text)
    sys.stdout.write(text)


# The search index tables and their value columns with SQL types, as the migrations have
# them, after `res_key` and `param` (none for `search_terms`).
INDEX_TABLES = {
    "search_terms": [("terms", "tsvector")],
    "search_date": [("low", "timestamptz"), ("high", "timestamptz")],
    "search_reference": [("target_type", "text"), ("target_id", "text"),
                         ("target_version", "text"), ("url", "text"),
                         ("identifier_system", "text"), ("identifier_value", "text")],
    "search_quantity": [("value", "numeric"), ("comparator", "text"), ("unit", "text"),
                        ("system", "text"), ("code", "text")],
    "search_number": [("value", "numeric")],
    "search_uri": [("uri", "text")],
    "search_composite": [("components", "jsonb")],
}
WITHOUT_PARAM = {"search_terms"}


def sql_literal(value):
    """A literal pgbench leaves alone: an E'' string whose colons are escaped (pgbench
    reads `:name` in a script as a variable)."""
    if value is None:
        return "null"
    if not isinstance(value, str):
        value = json.dumps(value)
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\x3a")
    return "E'" + escaped + "'"


def index_insert(db, res_id, template, out):
    """The raw create with the same search index rows the server writes: one
    `insert ... select cur.key, unnest(...)` per table that has rows, as the server does
    (its rows bound as arrays; here the arrays are literals)."""
    ctes = []
    for table, columns in INDEX_TABLES.items():
        param = [] if table in WITHOUT_PARAM else ["param"]
        names = param + [c for c, _ in columns]
        query = (f"select coalesce(json_agg(json_build_array({', '.join(names)})), '[]') "
                 f"from {table} where res_key = (select key from resources "
                 f"where res_type = 'Patient' and id = '{res_id}')")
        rows = json.loads(subprocess.run(["psql", "-qAtX", "-d", db, "-c", query],
                                         check=True, capture_output=True, text=True).stdout)
        if not rows:
            continue
        types = ["int4"] * len(param) + [t for _, t in columns]
        arrays = []
        for i, sql_type in enumerate(types):
            values = ", ".join(sql_literal(row[i]) for row in rows)
            arrays.append(f"array[{values}]::{sql_type}[]")
        ctes.append(f", ix_{table} as (\n    insert into {table} (res_key, {', '.join(names)})\n"
                    f"    select cur.key, v.* from cur, unnest({', '.join(arrays)}) as v\n)")
    text = open(template).read()
    marker = "/*INDEX*/"
    if marker not in text:
        sys.exit(f"{template}: no {marker} marker")
    open(out, "w").write(text.replace(marker, "\n".join(ctes)))


def main(argv):
    cmds = {"body": body, "seed": seed, "pgbench": pgbench, "wrk": wrk, "report": report,
            "index-insert": index_insert}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
