"""What the measuring scripts of bench/ share: psql, a process's CPU time, number formats, and
the results section of bench/README.md each of them rewrites.

Only the standard library: it runs wherever python3 does.
"""

import subprocess
import sys


def psql(db, sql):
    """The rows of `sql` on database `db`, as psql prints them unaligned."""
    return subprocess.run(
        ["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def cpu_ticks(pid):
    """User and system CPU time of a process so far, in clock ticks (0, 0 once gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0


def fmt_int(n):
    return f"{n:,.0f}"


def write_section(readme, begin, end, text):
    """Replaces what lies between the markers `begin` and `end` in `readme` by `text`; leaves
    the file alone (and says so) when it lacks them."""
    with open(readme, encoding="utf-8") as f:
        content = f.read()
    if begin not in content or end not in content:
        print(f"(no {begin} section in {readme}: not written)", file=sys.stderr)
        return
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(head + begin + "\n" + text + end + tail)
