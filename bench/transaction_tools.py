#!/usr/bin/env python3
"""The measuring side of bench/transaction (see bench/README.md, "Transaction ingest").

    transaction_tools.py tables DB                       the tables of DB and their rows
                                                         (JSON)
    transaction_tools.py written DB BEFORE               the tables whose rows grew since
                                                         BEFORE (a `tables` output), one a line
    transaction_tools.py measure DB URL PID GENERATOR FROM BUNDLES CLIENTS ROUND DIR TABLES...
                                                         one round at one concurrency: the
                                                         tables emptied, the ingest, then
                                                         the same rows by COPY; a JSON line
    transaction_tools.py report RUN_DIR [README]         the results as Markdown; with
                                                         README, written into its
                                                         transaction section too

Only the standard library: it runs wherever python3 does.
"""

import json
import os
import re
import statistics
import subprocess
import sys

from benchlib import cpu_ticks, fmt_int, psql, write_section

BEGIN = "<!-- transaction-results:begin (written by bench/transaction) -->"
END = "<!-- transaction-results:end -->"

TARGET_RATE = 3000
TARGET_RATIO = 0.25

TCK = os.sysconf("SC_CLK_TCK")



def tables(db):
    """Every table of the database's own schemas, with its exact row count."""
    names = psql(
        db,
        "select format('%I.%I', schemaname, relname) from pg_stat_user_tables "
        "order by schemaname, relname",
    ).split()
    if not names:
        return {}
    counts = psql(db, " union all ".join(
        f"select '{name}', count(*) from {name}" for name in names))
    out = {}
    for line in counts.splitlines():
        name, count = line.split("|")
        out[name] = int(count)
    return out



def backends(db):
    """The process ids of the PostgreSQL backends connected to the database."""
    out = psql(db, f"select pid from pg_stat_activity where datname = '{db}' "
                   "and pid <> pg_backend_pid()")
    return {int(p) for p in out.split()}


def backend_ticks(pids):
    return {pid: cpu_ticks(pid) for pid in pids}


def truncate(db, names):
    psql(db, f"truncate {', '.join(names)}")


def checkpoint(db):
    """CHECKPOINT as the superuser when it can (root with the local cluster), else as the
    bench role (which may not be allowed: then skipped)."""
    if os.getuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode == 0:
        env = {k: v for k, v in os.environ.items() if k not in ("PGHOST", "PGUSER", "PGPASSWORD")}
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-qX", "-p", os.environ.get("PGPORT", "5432"),
             "-d", db, "-c", "checkpoint"],
            capture_output=True, env=env, cwd="/",
        )
        if done.returncode == 0:
            return
    subprocess.run(["psql", "-qX", "-d", db, "-c", "checkpoint"], capture_output=True)


def timed_psql(db, script):
    """Runs a psql script with `\\timing on`; the sum of the times it printed, in seconds."""
    out = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", db],
        input="\\timing on\n" + script, check=True, capture_output=True, text=True,
    ).stdout
    return sum(float(m) for m in re.findall(r"^Time: ([0-9.]+) ms", out, re.M)) / 1000


def measure(db, url, pid, generator, first, bundles, clients, rnd, work_dir, names):
    """One round at one concurrency; returns the measurement."""
    pid = int(pid)
    truncate(db, names)
    # The Organizations and Practitioners the Bundles refer to, as a live server holds them
    # (referential integrity is on): written before the timing, not counted.
    subprocess.run([generator, "load", url, "0", "0"], check=True, capture_output=True)
    checkpoint(db)
    before = tables(db)
    pg_pids = backends(db)
    pg_before = backend_ticks(pg_pids)
    server_before = cpu_ticks(pid)
    load_before = os.getloadavg()
    out = subprocess.run(
        [generator, "ingest", url, str(first), str(bundles), str(clients)],
        check=True, capture_output=True, text=True,
    )
    server_after = cpu_ticks(pid)
    # Backends opened during the ingest count from zero.
    pg_pids |= backends(db)
    pg_after = backend_ticks(pg_pids)
    ingest = json.loads(out.stdout.strip().splitlines()[-1])
    after = tables(db)
    grew = {n: after[n] - before.get(n, 0) for n in after if after[n] != before.get(n, 0)}
    pg_user = sum(pg_after[p][0] - pg_before.get(p, (0, 0))[0] for p in pg_pids)
    pg_sys = sum(pg_after[p][1] - pg_before.get(p, (0, 0))[1] for p in pg_pids)

    # The same rows by COPY: out to files, the tables emptied, back in (timed).
    files = {n: os.path.join(work_dir, f"{n}.copy") for n in names}
    export = "".join(f"\\copy {n} to '{files[n]}' (format binary)\n" for n in names)
    timed_psql(db, export)
    copied_bytes = sum(os.path.getsize(f) for f in files.values())
    truncate(db, names)
    checkpoint(db)
    pg_pids_copy = backends(db)
    load = "begin;\n" + "".join(
        f"\\copy {n} from '{files[n]}' (format binary)\n" for n in names) + "commit;\n"
    copy_seconds = timed_psql(db, load)
    restored = tables(db)
    for f in files.values():
        os.unlink(f)
    mismatched = {n: [after[n], restored.get(n)] for n in names if restored.get(n) != after[n]}
    resources = grew.get("public.resources", 0)
    return {
        "round": int(rnd),
        "clients": int(clients),
        "bundles": ingest["bundles"],
        "entries": ingest["entries"],
        "committed": ingest["committed"],
        "by_type": ingest["by_type"],
        "errors": ingest["errors"],
        "first_error": ingest["first_error"],
        "request_bytes": ingest["bytes"],
        "seconds": ingest["seconds"],
        "p50_ms": ingest["p50_ms"],
        "p99_ms": ingest["p99_ms"],
        "rows": grew,
        "resources": resources,
        "server_cpu_user_s": (server_after[0] - server_before[0]) / TCK,
        "server_cpu_sys_s": (server_after[1] - server_before[1]) / TCK,
        "pg_cpu_user_s": pg_user / TCK,
        "pg_cpu_sys_s": pg_sys / TCK,
        "pg_backends": len(pg_pids),
        "copy_seconds": copy_seconds,
        "copy_bytes": copied_bytes,
        "copy_mismatched": mismatched,
        "copy_backends": len(pg_pids_copy),
        "loadavg": list(load_before),
    }


# --- report ------------------------------------------------------------------------------



def report(run_dir, readme=None):
    with open(f"{run_dir}/results.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(f"{run_dir}/meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    clients = sorted({r["clients"] for r in rows})
    rounds = max((r["round"] for r in rows), default=0)
    out = [f"Run of {meta['date']} on {meta['machine']}.", ""]
    out.append(
        f"{rounds} round(s) (medians; the ratio is the median of the rounds' ratios, "
        "lowest–highest in brackets); "
        f"{meta['bundles']} transaction Bundles of {meta['bundle_size']} entries per measurement "
        f"(seed {meta['seed']}); server commit {meta['commit']}; {meta['pg']}; "
        f"load average (1, 5, 15 min) before the run: {meta['loadavg']}."
    )
    out.append("")
    out.append("#### Ingest: `POST [base]` transaction Bundles vs `COPY FROM` of the same rows")
    out.append("")
    out.append(
        f"| clients | resources | server s | server resources/s | target ≥ {fmt_int(TARGET_RATE)} "
        "| Bundle p50 ms | Bundle p99 ms | `COPY` s | `COPY` resources/s | server / `COPY` "
        f"| target ≥ {TARGET_RATIO:.2f} |"
    )
    out.append("|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|:---:|")
    cpu = []
    notes = []
    for c in clients:
        rs = sorted((r for r in rows if r["clients"] == c), key=lambda r: r["round"])
        rates = [r["committed"] / r["seconds"] for r in rs]
        copy_rates = [r["resources"] / r["copy_seconds"] for r in rs]
        ratios = [a / b for a, b in zip(rates, copy_rates)]
        rate, copy_rate, ratio = (statistics.median(x) for x in (rates, copy_rates, ratios))
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        rate_spread = f" ({fmt_int(min(rates))}–{fmt_int(max(rates))})" if len(rates) > 1 else ""
        out.append(
            f"| {c} | {fmt_int(rs[0]['committed'])} "
            f"| {statistics.median(r['seconds'] for r in rs):.2f} "
            f"| {fmt_int(rate)}{rate_spread} | {'met' if rate >= TARGET_RATE else '**not met**'} "
            f"| {statistics.median(r['p50_ms'] for r in rs):.1f} "
            f"| {statistics.median(r['p99_ms'] for r in rs):.1f} "
            f"| {statistics.median(r['copy_seconds'] for r in rs):.3f} | {fmt_int(copy_rate)} "
            f"| {ratio:.2f}{spread} | {'met' if ratio >= TARGET_RATIO else '**not met**'} |"
        )
        per = lambda key: statistics.median(r[key] / r["committed"] * 1e6 for r in rs if r["committed"])
        cpu.append(
            f"{c} client(s): server {per('server_cpu_user_s'):.0f} + {per('server_cpu_sys_s'):.0f}, "
            f"PostgreSQL {per('pg_cpu_user_s'):.0f} + {per('pg_cpu_sys_s'):.0f}"
        )
        for r in rs:
            if r["errors"] or r["committed"] != r["entries"]:
                notes.append(
                    f"{c} client(s), round {r['round']}: {fmt_int(r['committed'])} of "
                    f"{fmt_int(r['entries'])} entries committed; errors {r['errors']}: "
                    f"{(r['first_error'] or '')[:200]}"
                )
            if r["copy_mismatched"]:
                notes.append(f"{c} client(s), round {r['round']}: COPY restored {r['copy_mismatched']}")
            if r["resources"] != r["committed"]:
                notes.append(
                    f"{c} client(s), round {r['round']}: {fmt_int(r['resources'])} rows in "
                    f"resources for {fmt_int(r['committed'])} entries answered 201"
                )
    out.append("")
    out.append(
        "CPU time per resource, user + system µs (server process; PostgreSQL: the backends "
        "of the bench database): " + "; ".join(cpu) + "."
    )
    out.append("")
    if notes:
        out.append("**Errors:** " + "; ".join(notes) + ".")
    else:
        total = sum(r["bundles"] for r in rows)
        out.append(
            f"Every Bundle ({fmt_int(total)} in all) was answered 200 with a transaction-response "
            "whose every entry is `201 Created`; every `COPY` restored each table's rows exactly."
        )
    first = rows[0] if rows else None
    if first:
        out.append("")
        by_type = ", ".join(f"{fmt_int(n)} {t}" for t, n in sorted(first["by_type"].items()))
        tables_line = ", ".join(
            f"`{name.removeprefix('public.')}` {fmt_int(n)}" for name, n in
            sorted(first["rows"].items(), key=lambda kv: -kv[1]))
        out.append(
            f"Rows written per measurement, by both sides ({by_type}): {tables_line}; "
            f"{first['copy_bytes'] / 1e6:.1f} MB of `COPY` binary data, "
            f"{first['request_bytes'] / 1e6:.1f} MB of Bundles sent."
        )
    text = "\n".join(out) + "\n"
    if readme:
        write_section(readme, BEGIN, END, text)
    return text


def main(argv):
    match argv:
        case ["tables", db]:
            print(json.dumps(tables(db)))
        case ["written", db, before]:
            before = json.loads(before)
            for name, count in tables(db).items():
                if count != before.get(name, 0):
                    print(name)
        case ["measure", db, url, pid, generator, first, bundles, clients, rnd, work_dir, *names]:
            r = measure(db, url, pid, generator, first, bundles, clients, rnd, work_dir, names)
            print(json.dumps(r), flush=True)
            print(
                f"[bench/transaction]   {r['committed']} resources in {r['seconds']:.2f} s: "
                f"{r['committed'] / r['seconds']:,.0f}/s; COPY {r['copy_seconds']:.3f} s: "
                f"{r['resources'] / r['copy_seconds']:,.0f}/s; errors: {r['errors'] or 'none'}",
                file=sys.stderr,
            )
        case ["report", run_dir, *readme]:
            sys.stdout.write(report(run_dir, readme[0] if readme else None))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
