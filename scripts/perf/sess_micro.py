"""The session table's admit+applied per command (medians of 5)."""
import time
from ra_actors.core import types as t
from ra_actors.core.sessions import SessionTable
key = "0123456789abcdef0123/null0@n1"
N = 200000
ss = [t.SessionSeq(key, i + 1, max(1, i - 1000), False) for i in range(N)]
def run():
    st = SessionTable(300000)
    t0 = time.process_time()
    ts = 1700000000000
    for i, s in enumerate(ss):
        st.admit(s, ts + (i >> 6)); st.applied(s, None)
    return (time.process_time() - t0) / N * 1e6
run(); r = sorted(run() for _ in range(5)); print("admit+applied us/command %.3f" % r[2])
