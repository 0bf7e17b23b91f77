"""CPU per log entry of a 256-entry batch of 16-byte pipelined commands, with
and without a session: replication frame encode/decode (the stream's wire
codec), WAL encode (medians of 5)."""
import time, sys
from ra_actors.actors.stream import wire_codec
from ra_actors import codec
from ra_actors.core import types as t
from ra_actors.core import messages as m
from ra_actors.core.sessions import SessionTable
from ra_actors.actors.protocol import Rpcs, Bundle
from ra_actors.core.types import ServerId
wc = wire_codec()
N = 256
key = "0123456789abcdef0123/null0@n1"
def entries(sess):
    return tuple(t.Entry(1000 + i, 3, t.Usr(b"x" * 16, t.NotifyReply(i, "client:n1:abcdef"), 1700000000000,
                                           t.SessionSeq(key, i + 1, 1, True) if sess else None)) for i in range(N))
def bench(fn, reps=200):
    best = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(reps): fn()
        best.append((time.process_time() - t0) / reps / N * 1e6)
    best.sort(); return best[2]
import inspect
AE = m.AppendEntriesRpc
print(inspect.signature(AE))
for sess in (False, True):
    es = entries(sess)
    ae = AE(*[3, ServerId("null0", "n1"), 999, 3, es, 990][:len(inspect.signature(AE).parameters)]) if False else None
    frame = wc.pack(es)
    print("session" if sess else "no session",
          "wire pack %.2f" % bench(lambda: wc.pack(es)),
          "wire unpack %.2f" % bench(lambda: wc.unpack(frame)),
          "wal pack %.2f" % bench(lambda: [codec.pack(e.command) for e in es]),
          "bytes/entry %d" % (len(frame) / N))
st = SessionTable(60000)
ss = [t.SessionSeq(key, i + 1, max(1, i - 1000), False) for i in range(200000)]
def adm():
    for s in ss[:N * 200]:
        st.admit(s, 1); st.applied(s, None)
t0 = time.process_time(); adm(); print("admit+applied us %.2f" % ((time.process_time() - t0) / (N * 200) * 1e6))
