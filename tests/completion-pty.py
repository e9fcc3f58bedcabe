# SPDX-License-Identifier: BSD-3-Clause
# Types command lines followed by TAB into an interactive bash on a
# pseudo-terminal, so that readline splits the words and runs the
# completion exactly as for a user, and prints what the completion
# function offered for each line.
#
#   python3 completion-pty.py RCFILE DUMPFILE LINE...
#
# RCFILE must wrap the completion functions so that each run writes its
# COMPREPLY, one candidate a line, to DUMPFILE (written whole, then
# renamed into place).  Output: "LINE<TAB>" then the sorted candidates,
# separated by spaces, one line per LINE.
import os
import pty
import select
import sys
import time

rcfile, dump, lines = sys.argv[1], sys.argv[2], sys.argv[3:]

pid, fd = pty.fork()
if pid == 0:
    os.execvp("bash", ["bash", "--noprofile", "--rcfile", rcfile, "-i"])


def drain(seconds):
    end = time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                if not os.read(fd, 65536):
                    return
            except OSError:
                return


def wait_for(path, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if os.path.exists(path):
            return True
        drain(0.05)
    return False


# The shell is ready when it has run the rc file (it writes DUMPFILE).
if not wait_for(dump, 20):
    sys.exit("bash did not start")
status = 0
for line in lines:
    os.unlink(dump)
    os.write(fd, line.encode() + b"\t")
    if wait_for(dump, 20):
        with open(dump) as f:
            got = sorted(w for w in f.read().split("\n") if w)
        print(line + "\t" + " ".join(got))
    else:
        print(line + "\t(no completion ran)")
        status = 1
        open(dump, "w").close()
    # Ctrl-U clears what was typed or completed.
    os.write(fd, b"\x15")
    drain(0.1)
os.write(fd, b"exit\n")
drain(0.5)
os.waitpid(pid, 0)
sys.exit(status)
