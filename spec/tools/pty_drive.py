#!/usr/bin/env python3
"""Drives an interactive program through a pseudo-terminal, for spec/repl_spec.lua (CI has no terminal, so
the test makes its own). Usage:

    pty_drive.py [--cols N] [--timeout S] -- program [args] ::: action ...

Actions, in order:
    send:TEXT     write TEXT to the terminal (Python escapes: \\n, \\t, \\x03 for Ctrl-C)
    expect:REGEX  wait until the output read since the last expect matches REGEX (Python re, DOTALL)
    sleep:S       wait S seconds
The terminal has 200 rows, so that completion lists need no paging. At the end the terminal is closed (the program sees EOF/SIGHUP) and the whole output is written to stdout with
carriage returns and terminal escape sequences removed. Exit status 0, or 1 when an expect timed out (the output
so far, then a line "pty_drive: timeout waiting for REGEX")."""
import codecs
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import sys
import tempfile
import termios
import time

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\x07")


def clean(raw):
    text = raw.decode("utf-8", "replace")
    return ESCAPES.sub("", text).replace("\r", "")


def main(argv):
    cols, timeout = 80, 10.0
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--cols":
            cols = int(argv.pop(0))
        elif opt == "--timeout":
            timeout = float(argv.pop(0))
        else:
            sys.exit("pty_drive: unknown option " + opt)
    argv.pop(0)
    sep = argv.index(":::")
    program, actions = argv[:sep], argv[sep + 1:]

    home = tempfile.mkdtemp(prefix="pty_drive")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal, so Ctrl-C there is SIGINT
        os.environ["TERM"] = os.environ.get("PTY_TERM", "dumb")
        os.environ["INPUTRC"] = os.environ.get("PTY_INPUTRC", "/dev/null")
        os.environ.pop("COLUMNS", None)
        os.environ["HOME"] = home  # a fresh history file
        # NOFLSH: without it the kernel flushes the terminal's queues when Ctrl-C makes its SIGINT, and that flush
        # can come after the program already wrote its "^C" and new prompt, which then never reach the transcript
        attrs = termios.tcgetattr(0)
        attrs[3] |= termios.NOFLSH
        termios.tcsetattr(0, termios.TCSANOW, attrs)
        os.execvp(program[0], program)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 200, cols, 0, 0))

    out = b""
    mark = 0  # expect looks at the output after the previous match

    def read(deadline):
        nonlocal out
        wait = max(0.0, deadline - time.monotonic())
        r, _, _ = select.select([fd], [], [], min(wait, 0.05))
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                return False
            out += data
        return True

    status = 0
    for action in actions:
        kind, _, arg = action.partition(":")
        if kind == "send":
            os.write(fd, codecs.decode(arg, "unicode_escape").encode("latin-1"))
        elif kind == "sleep":
            end = time.monotonic() + float(arg)
            while time.monotonic() < end and read(end):
                pass
        elif kind == "expect":
            pattern = re.compile(arg, re.S)
            deadline = time.monotonic() + timeout
            while True:
                m = pattern.search(clean(out[mark:]))
                if m:
                    # move the mark past the match (in raw bytes: past all output read so far is good enough
                    # when the match is at the end, which is how the specs use it)
                    mark = len(out)
                    break
                if time.monotonic() > deadline or not read(deadline):
                    sys.stdout.write(clean(out))
                    sys.stdout.write("\npty_drive: timeout waiting for " + arg + "\n")
                    status = 1
                    break
            if status:
                break
        else:
            sys.exit("pty_drive: unknown action " + action)
    # let the program finish printing, then hang up
    end = time.monotonic() + 0.2
    while time.monotonic() < end and read(end):
        pass
    os.close(fd)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    shutil.rmtree(home, ignore_errors=True)
    if status == 0:
        sys.stdout.write(clean(out))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
