"""Signals a command once it said it is ready: the readiness handshake of the signal tests.

    python3 tests/support/signal_after_ready.py SIGNAL WATCHDOG_SECS CMD [ARG...]

Starts CMD with default signal dispositions (a shell's `&` would have it ignore SIGINT and
SIGQUIT), copies its stdout to ours and, when its first line is exactly "ready", sends it
SIGNAL (a name such as HUP). Exits with CMD's exit code (128+N if it died of signal N);
CMD's stderr passes through. A CMD that is not ready, or not gone, within WATCHDOG_SECS is
killed and this exits 99 with a message saying which.
"""

import os
import signal
import subprocess
import sys
import threading


def main():
    sig = getattr(signal, "SIG" + sys.argv[1])
    watchdog = float(sys.argv[2])
    cmd = sys.argv[3:]
    defaults = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE)

    def reset():
        for s in defaults:
            signal.signal(s, signal.SIG_DFL)

    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         preexec_fn=reset)
    fired = []

    def kill():
        fired.append(True)
        p.kill()

    timer = threading.Timer(watchdog, kill)
    timer.start()
    first = p.stdout.readline()
    os.write(1, first)
    if first == b"ready\n":
        p.send_signal(sig)
    rest = p.stdout.read()
    os.write(1, rest)
    code = p.wait()
    timer.cancel()
    if fired:
        sys.stderr.write(f"signal_after_ready: watchdog: {cmd} still ran after {watchdog} s "
                         f"(first line {first!r})\n")
        sys.exit(99)
    if first != b"ready\n":
        sys.stderr.write(f"signal_after_ready: the first line was {first!r}, not 'ready'; "
                         "no signal sent\n")
        sys.exit(99)
    sys.exit(128 - code if code < 0 else code)


main()
