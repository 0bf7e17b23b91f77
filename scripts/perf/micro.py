"""Client-side cost per pipelined command, no nodes: api.pipeline_command path
(with _command + normalise) into a Pipeliner whose connection packs each Pipeline
with the stream's wire codec and then answers it with an Applied (decoded, filtered)."""
import sys, time
from ra_actors import events as ev
from ra_actors.actors.stream import wire_codec
from ra_actors.api import Client
from ra_actors.client.pipelining import Pipeliner
from ra_actors.client.sessions import Session
from ra_actors.core.types import ServerId
from ra_actors.bench.ra_bench import payload

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
W = 1024
codec = wire_codec()

class Book:
    def forget_server(self, s): pass

class Conn:
    def __init__(self):
        self.events = []
        self.event_filter = None
        self.book = Book()
        self.pending = []
        self.bytes = 0
    def send_untracked(self, addr, msg, timeout, undelivered=None):
        frame = codec.pack(msg)
        self.bytes += len(frame)
        self.pending.append(msg)
    def pump(self, t): pass

class Resolver:
    def resolve(self, sid, deadline): return "addr"
    def other_member(self, *a): return None

conn = Conn()
sid = ServerId("null0", "n1")
pl = Pipeliner(conn, Resolver(), "h", Session(None, time.time_ns() // 1000), 256, 0.005, 30.0)
client = Client.__new__(Client)
client.max_command_bytes = 1 << 20
client._pipeline = pl

def answer():
    # the server's side is not measured: build the Applied, pack+unpack it as the wire does
    for msg in conn.pending:
        res = [(c.correlation, None) for c in msg.commands]
        e = codec.unpack(codec.pack(ev.Applied(sid, res)))
        e = ev.Applied(e.leader, list(e.results))
        out = pl.on_event(e)
        if out is not None:
            conn.events.append(out)
    conn.pending.clear()

def run(n):
    sent = acked = 0
    t0 = time.process_time()
    while acked < n:
        while sent - acked < W and sent < n:
            sent += 1
            client.pipeline_command(sid, payload(sent), sent)
        pl.flush()
        answer()
        for e in conn.events:
            acked += len(e.results)
        conn.events.clear()
    return (time.process_time() - t0) / n * 1e6

run(20000)
rs = sorted(run(N) for _ in range(5))
print(f"client us/command: median {rs[2]:.2f}  (min {rs[0]:.2f}, max {rs[-1]:.2f}); wire bytes/cmd {conn.bytes / (N*5+20000):.1f}")
if "--prof" in sys.argv:
    import cProfile, pstats
    pr = cProfile.Profile(time.process_time); pr.enable(); run(N); pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)
