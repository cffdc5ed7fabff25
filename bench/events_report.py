#!/usr/bin/env python3
"""The tables of bench/events from its run directory (relay.json, worker.json, lag.jsonl,
load.jsonl, meta.json); with a README path, also written between its markers."""

import json
import os
import sys

from benchlib import write_section

BEGIN = "<!-- events-results:begin (written by bench/events) -->"
END = "<!-- events-results:end -->"
RELAY_TARGET = 0.50
LAG_P99_TARGET_MS = 1000.0


def load(path):
    with open(path) as f:
        return json.load(f)


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def num(value, digits=0):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def ms(value):
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def met(ok):
    return "met" if ok else "**not met**"


def report(run_dir):
    meta = load(os.path.join(run_dir, "meta.json"))
    relay = load(os.path.join(run_dir, "relay.json"))
    worker = load(os.path.join(run_dir, "worker.json"))
    lags = lines(os.path.join(run_dir, "lag.jsonl"))
    load_by_phase = {p["phase"]: p["loadavg"] for p in lines(os.path.join(run_dir, "load.jsonl"))}

    plain = [p["events_per_s"] for p in relay["plain"]]
    plain_mean = sum(plain) / len(plain)
    relay_rate = relay["relay"]["events_per_s"]
    ratio = relay_rate / plain_mean
    low, high = relay_rate / max(plain), relay_rate / min(plain)

    out = []
    out.append(
        f"Run of {meta['date']} on {meta['machine']}.\n\n"
        f"{relay['events']:,} events in the outbox (Patient creates and updates, "
        f"{relay['mean_payload_bytes']:,} bytes each on average), batches of {relay['batch']}; "
        f"{len(lags)} lag rate(s) of {meta['lag_seconds']} s each; server commit {meta['commit']}; "
        f"{meta['pg_version']} ({meta['pg_settings']}); {meta['rabbitmq_version']}; "
        "load average (1, 5, 15 min) before the run: "
        f"{meta['loadavg']}, before each phase: "
        + "; ".join(f"{phase} {value}" for phase, value in load_by_phase.items())
        + ".\n"
    )

    out.append("#### Relay: the server's relay step vs a plain lapin publish loop\n")
    out.append("| publisher | events | seconds | events/s |")
    out.append("|---|---:|---:|---:|")
    out.append(
        f"| plain loop, before the relay | {relay['events']:,} | "
        f"{relay['plain'][0]['seconds']:.2f} | {num(plain[0])} |"
    )
    out.append(
        f"| relay (`fhir_server::relay::step` until the outbox is empty) | {relay['events']:,} | "
        f"{relay['relay']['seconds']:.2f} | {num(relay_rate)} |"
    )
    out.append(
        f"| plain loop, after the relay | {relay['events']:,} | "
        f"{relay['plain'][1]['seconds']:.2f} | {num(plain[1])} |"
    )
    out.append("")
    out.append(
        f"Relay / plain loop (mean of its two rounds): **{ratio:.2f}** "
        f"(against each round: {low:.2f}–{high:.2f}); target ≥ {RELAY_TARGET:.2f}: "
        f"{met(ratio >= RELAY_TARGET)}.\n"
    )

    out.append("#### Worker: the relay's backlog applied by `analytics-worker`\n")
    out.append("| events | seconds (first applied → last visible) | events/s | events/s from the worker's start |")
    out.append("|---:|---:|---:|---:|")
    out.append(
        f"| {worker['events']:,} | {worker['seconds']:.2f} | {num(worker['events_per_s'])} | "
        f"{num(worker['events_per_s_from_start'])} |"
    )
    out.append("")
    out.append("No target; default settings (prefetch 128, 4 transactions at once), billing accounts off.\n")

    out.append("#### Lag: server answer (commit) → the worker's tables show the version\n")
    out.append(
        "| target writes/s | sent/s | answered/s | sent > 10 ms late | answer p50 / p99 ms "
        "| lag p50 ms | lag p90 ms | lag p99 ms | lag max ms | target p99 < 1 s |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    notes = []
    for lag in lags:
        p99 = lag["lag_ms"]["p99"]
        ok = p99 is not None and p99 < LAG_P99_TARGET_MS and lag["unobserved"] == 0 and lag["errors"] == 0
        out.append(
            f"| {lag['rate']:,} | {num(lag['sent_per_s'])} | {num(lag['answered_per_s'])} | "
            f"{lag['late']:,} of {lag['writes']:,} | "
            f"{ms(lag['response_ms']['p50'])} / {ms(lag['response_ms']['p99'])} | "
            f"{ms(lag['lag_ms']['p50'])} | {ms(lag['lag_ms']['p90'])} | {ms(p99)} | "
            f"{ms(lag['lag_ms']['max'])} | {met(ok)} |"
        )
        if lag["errors"] or lag["unobserved"]:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(lag.get("error_kinds", {}).items()))
            notes.append(
                f"at {lag['rate']:,}/s: {lag['errors']:,} writes failed"
                + (f" ({kinds})" if kinds else "")
                + f", {lag['unobserved']:,} answered but never seen applied"
            )
        if lag["answered_per_s"] < 0.95 * lag["rate"]:
            notes.append(
                f"at {lag['rate']:,}/s the server answered only {lag['answered_per_s']:,.0f} writes/s: "
                "the rate was not sustained on this machine"
            )
    out.append("")
    if notes:
        out.append("Notes: " + "; ".join(notes) + ".\n")
    else:
        out.append("Every write was answered 2xx and seen applied.\n")
    warnings = meta.get("log_warnings", 0)
    out.append(
        f"Warnings or errors in the server's and worker's logs: {warnings}."
        if warnings
        else "No warning or error in the server's and worker's logs."
    )
    return "\n".join(out) + "\n"



def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: events_report.py RUN_DIR [README]")
    text = report(sys.argv[1])
    sys.stdout.write(text)
    if len(sys.argv) == 3:
        write_section(sys.argv[2], BEGIN, END, text)


if __name__ == "__main__":
    main()
