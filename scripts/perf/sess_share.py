"""Sessions' share of py-spy raw files: sess_share.py FILE...

A sample counts as session code if any of its frames is in
core/sessions.py or client/sessions.py, or is the port's session_seq or
the core's _resequence or _admit_session_command.  Prints the share of all
samples and of the samples not waiting in poll/select/sleep."""
import sys

SESSION_FUNCTIONS = ("session_seq ", "RaftServer._resequence ", "RaftServer._admit_session_command ")
WAITS = ("poll ", "select ", "PassSelector.select", "sleep", "wait")


def is_session(frame: str) -> bool:
    return "core/sessions.py" in frame or "client/sessions.py" in frame or frame.startswith(SESSION_FUNCTIONS)


for path in sys.argv[1:]:
    total = session = waiting = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            count = int(count)
            total += count
            frames = stack.split(";")
            if any(is_session(fr) for fr in frames):
                session += count
            if frames[-1].startswith(WAITS):
                waiting += count
    print(f"{path}: {total} samples; session code {100 * session / max(1, total):.2f} % of them, "
          f"{100 * session / max(1, total - waiting):.2f} % of those not waiting")
