"""Run a command and write 'wall user sys maxrss_kib exit' to a file: the fallback of procs.wrapper() where
GNU /usr/bin/time is missing. Run with `python -S -I` so this process, whose RSS a child inherits as the
floor of its ru_maxrss, stays small (~8 MB).

    python -S -I rusage_child.py USAGE_FILE CMD [ARGS...]
"""
import os
import sys
import time


def main() -> int:
    usage_path, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(usage_path, "w") as f:
        f.write(f"{time.perf_counter() - started:.3f} {ru.ru_utime:.3f} {ru.ru_stime:.3f} {ru.ru_maxrss} {code}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
