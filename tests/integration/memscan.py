#!/usr/bin/env python3
# Searches a running process's memory for secrets (as root), for vmcryptd's memory tests.
#
#   memscan.py PID PATTERN-FILE [--followed-by BYTE]
#
# PATTERN-FILE holds fixed strings, one a line (secrets never go on a command line). Reads every
# readable mapping of at most 256 MiB through /proc/PID/mem (ASan's shadow reservations are
# terabytes and hold no copies). With --followed-by, counts only copies followed by that byte
# (e.g. 0: a header value libmicrohttpd NUL-terminated in place in its connection memory).
# Prints one line per pattern found and exits 1 when any was found.
import sys


def main():
    pid, patterns = int(sys.argv[1]), [l.rstrip("\n").encode() for l in open(sys.argv[2]) if l.strip()]
    follow = None
    if len(sys.argv) > 4 and sys.argv[3] == "--followed-by":
        follow = bytes([int(sys.argv[4], 0)])
    hits = [0] * len(patterns)
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if f[1][0] != "r" or hi - lo > (256 << 20) or (len(f) > 5 and f[5] in ("[vvar]", "[vsyscall]")):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for i, p in enumerate(patterns):
                j = data.find(p)
                while j >= 0:
                    if follow is None or data[j + len(p):j + len(p) + 1] == follow:
                        hits[i] += 1
                    j = data.find(p, j + 1)
    for i, n in enumerate(hits):
        if n:
            print(f"memscan: pattern {i + 1} found {n} time(s)")
    sys.exit(1 if any(hits) else 0)


if __name__ == "__main__":
    main()
