"""Prints the CPU seconds (user + system) used so far by a process tree.

    python3 cputree.py PID          ->  "12.34 5"  (CPU seconds, live processes counted)
    python3 cputree.py --pids PID   ->  PID and its live descendants, one a line

Sums, over PID and every live descendant, fields 14-17 of /proc/<pid>/stat:
utime + stime (the process's own threads) + cutime + cstime (its children
that have exited and that it has waited for). A descendant that exited and
was reaped is thus counted once, in its parent's cutime/cstime; a live one
in its own utime/stime. (A child that exited but was not waited for is
missed; Spark's launcher scripts, the JVM and PySpark's worker daemon all
reap theirs.) Differences between two readings give the CPU time of the
interval, whichever processes started or ended in between, as long as PID
itself is alive at both.

For Spark the tree is: the python driver -> spark-submit (bash, exec'd
into) the driver JVM -> `python -m pyspark.daemon` -> python workers, so
the whole job (JVM, Python driver and Python workers) is counted. (The
daemon puts itself in a process group of its own, so compare.sh uses
--pids, not the engine's process group, to kill a whole tree.)
"""

import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def read_stats():
    """Returns {pid: (ppid, cpu ticks)} for every process readable now."""
    stats = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue  # it ended meanwhile
        # The command name is in parentheses and may hold spaces: split after it.
        fields = text[text.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
        ppid = int(fields[1])
        ticks = sum(int(x) for x in fields[11:15])
        stats[int(name)] = (ppid, ticks)
    return stats


def tree(root, stats):
    """root and its descendants, parents first."""
    if root not in stats:
        raise SystemExit(f"cputree: no process {root}")
    children = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


if __name__ == "__main__":
    stats = read_stats()
    if sys.argv[1] == "--pids":
        print("\n".join(str(pid) for pid in tree(int(sys.argv[2]), stats)))
    else:
        pids = tree(int(sys.argv[1]), stats)
        print(f"{sum(stats[pid][1] for pid in pids) / TICKS:.2f} {len(pids)}")
