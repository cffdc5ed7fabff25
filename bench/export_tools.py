#!/usr/bin/env python3
"""The measuring side of bench/export (see bench/README.md, "Export").

    export_tools.py export URL PID DB EXPORT_DIR SIZE ROUND     one system $export: kick-off,
                                                             polls, manifest; a JSON line
    export_tools.py copy DB FILE SIZE ROUND                   psql \\copy of the same rows to
                                                             FILE, fsync'ed; a JSON line
    export_tools.py report RUN_DIR [README]                   the results as Markdown; with
                                                             README, written into its
                                                             export section too

Only the standard library: it runs wherever python3 does.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

from benchlib import cpu_ticks, fmt_int, psql, write_section

BEGIN = "<!-- export-results:begin (written by bench/export) -->"
END = "<!-- export-results:end -->"

# What the raw side reads: every current resource's JSON text, as the export does.
COPY_QUERY = "select content::text from resources where not deleted"

# How often the status URL is polled and the server's memory sampled.
POLL_SECONDS = 0.05


def proc_status(pid):
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out



def request(method, url, headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()



def export(url, pid, db, export_dir, size, rnd):
    """Kicks off `$export`, polls its status until the manifest, and checks the output
    against the table; returns the measurement."""
    pid = int(pid)
    tck = os.sysconf("SC_CLK_TCK")
    rss_before = proc_status(pid)["VmRSS"]
    cpu_before = cpu_ticks(pid)
    started = time.monotonic()
    status, headers, body = request("GET", f"{url}/$export", {"Prefer": "respond-async"})
    if status != 202:
        sys.exit(f"kick-off answered {status}: {body[:300]!r}")
    location = headers.get("Content-Location") or headers.get("content-location")
    polls, rss_peak = 0, rss_before
    while True:
        rss_peak = max(rss_peak, proc_status(pid)["VmRSS"])
        status, headers, body = request("GET", location)
        polls += 1
        if status == 200:
            break
        if status not in (202, 429):
            sys.exit(f"status answered {status}: {body[:300]!r}")
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - started
    cpu_after = cpu_ticks(pid)
    memory = proc_status(pid)
    manifest = json.loads(body)
    job = location.rstrip("/").rsplit("/", 1)[1]
    # The server's own account of the job: accepted, snapshot taken, completed.
    created, snapshot, completed = psql(
        db,
        "select extract(epoch from created_at), extract(epoch from transaction_time), "
        f"extract(epoch from heartbeat_at) from export_jobs where id = '{job}'",
    ).split("|")
    counts = {}
    for entry in manifest["output"]:
        counts[entry["type"]] = counts.get(entry["type"], 0) + entry["count"]
    files = [f for f in os.listdir(os.path.join(export_dir, job)) if f.endswith(".ndjson")]
    file_bytes = sum(os.path.getsize(os.path.join(export_dir, job, f)) for f in files)
    rows = int(psql(db, "select count(*) from resources where not deleted"))
    # The files go (DELETE), so that the next measurement has the disk to itself.
    status, _, _ = request("DELETE", location)
    if status != 202:
        sys.exit(f"DELETE of the job answered {status}")
    return {
        "side": "export",
        "size": int(size),
        "round": int(rnd),
        "seconds": seconds,
        "resources": sum(counts.values()),
        "rows": rows,
        "by_type": counts,
        "files": len(files),
        "bytes": file_bytes,
        "polls": polls,
        "server_seconds": float(completed) - float(created),
        "snapshot_after_s": float(snapshot) - float(created),
        "cpu_user_s": (cpu_after[0] - cpu_before[0]) / tck,
        "cpu_sys_s": (cpu_after[1] - cpu_before[1]) / tck,
        "rss_before_kb": rss_before,
        "rss_peak_sampled_kb": rss_peak,
        "rss_after_kb": memory["VmRSS"],
        "hwm_kb": memory["VmHWM"],
    }


def copy(db, path, size, rnd):
    """`\\copy (select content::text ...) to FILE`, then fsync of FILE (the export syncs its
    files too); returns the measurement."""
    started = time.monotonic()
    out = subprocess.run(
        ["psql", "-qX", "-v", "ON_ERROR_STOP=1", "-d", db,
         "-c", f"\\copy ({COPY_QUERY}) to '{path}'"],
        check=True, capture_output=True, text=True,
    )
    copied = time.monotonic() - started
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.monotonic() - started
    size_bytes = os.path.getsize(path)
    os.unlink(path)
    match = re.search(r"COPY (\d+)", out.stdout + out.stderr)
    rows = int(match.group(1)) if match else int(psql(db, "select count(*) from resources where not deleted"))
    return {
        "side": "copy",
        "size": int(size),
        "round": int(rnd),
        "seconds": seconds,
        "copy_seconds": copied,
        "resources": rows,
        "bytes": size_bytes,
    }


# --- report ------------------------------------------------------------------------------



def fmt_mb(kb):
    return f"{kb / 1024:.1f}"


def report(run_dir, readme=None):
    rows = []
    with open(f"{run_dir}/results.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(f"{run_dir}/meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    loads = {}
    if os.path.exists(f"{run_dir}/load.jsonl"):
        with open(f"{run_dir}/load.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    loads[r["size"]] = r
    sizes = sorted({r["size"] for r in rows})
    out = []
    out.append(f"Run of {meta['date']} on {meta['machine']}.")
    out.append("")
    out.append(
        f"{meta['rounds']} round(s) per size (medians; the ratio is the median of the rounds' "
        "ratios, lowest–highest in brackets); "
        f"seed {meta['seed']}; server commit {meta['commit']}; {meta['pg']}; "
        f"load average (1, 5, 15 min) before each size: "
        + "; ".join(f"{fmt_int(s)}: {meta['loadavg'].get(str(s), '?')}" for s in sizes)
        + "."
    )
    out.append("")
    out.append("#### Throughput: system `$export` (kick-off → manifest) vs `\\copy` of the same rows")
    out.append("")
    out.append(
        "| resources | export s | export resources/s | server's own s | `\\copy` + fsync s "
        "| `\\copy` resources/s | export / `\\copy` | target ≥ 0.50 |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|:---:|")
    notes = []
    verdicts = {}
    for size in sizes:
        ex = {r["round"]: r for r in rows if r["size"] == size and r["side"] == "export"}
        cp = {r["round"]: r for r in rows if r["size"] == size and r["side"] == "copy"}
        both = sorted(k for k in ex if k in cp)
        if not both:
            continue
        ratios = [
            (ex[k]["resources"] / ex[k]["seconds"]) / (cp[k]["resources"] / cp[k]["seconds"])
            for k in both
        ]
        mid = statistics.median(ratios)
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        ex_s = statistics.median(ex[k]["seconds"] for k in both)
        cp_s = statistics.median(cp[k]["seconds"] for k in both)
        own = statistics.median(ex[k]["server_seconds"] for k in both)
        n = ex[both[0]]["resources"]
        verdict = "met" if mid >= 0.5 else "**not met**"
        verdicts[size] = mid
        out.append(
            f"| {fmt_int(n)} | {ex_s:.2f} | {fmt_int(n / ex_s)} | {own:.2f} | {cp_s:.2f} "
            f"| {fmt_int(n / cp_s)} | {mid:.2f}{spread} | {verdict} |"
        )
        for k in both:
            e, c = ex[k], cp[k]
            if e["resources"] != e["rows"] or e["resources"] != c["resources"]:
                notes.append(
                    f"{fmt_int(size)}, round {k}: the export's counts add up to "
                    f"{fmt_int(e['resources'])}, the table holds {fmt_int(e['rows'])}, "
                    f"`\\copy` wrote {fmt_int(c['resources'])} rows"
                )
            if e["bytes"] != c["bytes"]:
                notes.append(
                    f"{fmt_int(size)}, round {k}: the export's files hold {fmt_int(e['bytes'])} "
                    f"bytes, `\\copy`'s {fmt_int(c['bytes'])}"
                )
    out.append("")
    checks = [r for r in rows if r["side"] == "export"]
    if not notes:
        out.append(
            "Every export's manifest counts add up to the table's current rows, and its files hold "
            "as many bytes as `\\copy`'s output (the same JSON text, `resourceType` moved first)."
        )
    else:
        out.append("**Mismatches:** " + "; ".join(notes) + ".")
    cpu = []
    for size in sizes:
        ex = [r for r in checks if r["size"] == size]
        if ex:
            u = statistics.median(r["cpu_user_s"] / r["resources"] * 1e6 for r in ex)
            s_ = statistics.median(r["cpu_sys_s"] / r["resources"] * 1e6 for r in ex)
            cpu.append(f"{fmt_int(size)}: {u:.1f} + {s_:.1f}")
    if cpu:
        out.append("")
        out.append(
            "Server CPU time per exported resource, user + system µs: " + "; ".join(cpu) + "."
        )
    out.append("")
    out.append("#### Memory: the server's peak resident set (VmHWM), a fresh server per size")
    out.append("")
    out.append(
        "| resources | VmRSS before the first export MB | highest VmRSS sampled during the exports MB "
        "| VmHWM after the exports MB |"
    )
    out.append("|---:|---:|---:|---:|")
    hwm = {}
    for size in sizes:
        ex = sorted((r for r in checks if r["size"] == size), key=lambda r: r["round"])
        if not ex:
            continue
        hwm[size] = max(r["hwm_kb"] for r in ex)
        out.append(
            f"| {fmt_int(ex[0]['resources'])} | {fmt_mb(ex[0]['rss_before_kb'])} "
            f"| {fmt_mb(max(r['rss_peak_sampled_kb'] for r in ex))} | {fmt_mb(hwm[size])} |"
        )
    if len(hwm) >= 2:
        lo, hi = min(hwm), max(hwm)
        growth = hwm[hi] / hwm[lo] - 1
        verdict = "met" if abs(growth) <= 0.10 else "**not met**"
        out.append("")
        out.append(
            f"Peak at {fmt_int(hi)} against {fmt_int(lo)}: {growth * 100:+.1f} % "
            f"(target within 10 %: {verdict})."
        )
    if loads:
        out.append("")
        out.append(
            "Load (not measured against anything): "
            + "; ".join(
                f"{fmt_int(l['from'])} → {fmt_int(l['to'])} resources in {l['seconds']:.0f} s"
                for l in sorted(loads.values(), key=lambda l: l["to"])
            )
            + f"; table size at the end {meta.get('table_size', '?')}."
        )
    text = "\n".join(out) + "\n"
    if readme:
        write_section(readme, BEGIN, END, text)
    return text


def main(argv):
    match argv:
        case ["export", url, pid, db, export_dir, size, rnd]:
            print(json.dumps(export(url, pid, db, export_dir, size, rnd)), flush=True)
        case ["copy", db, path, size, rnd]:
            print(json.dumps(copy(db, path, size, rnd)), flush=True)
        case ["report", run_dir, *readme]:
            sys.stdout.write(report(run_dir, readme[0] if readme else None))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
