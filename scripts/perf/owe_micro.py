"""The leader port's cost per pipelined command: _on_pipeline of 256-command
Pipelines and their applied() answers, on the fake port of
tests/test_client_protocol.py (CPU, medians of 5).  ``--columns``: the
Pipelines as PipelinedColumns (what clients send), else one
PipelinedCommand per command (earlier clients); ``--wire``: each Pipeline
decoded from its stream frame first."""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from test_client_protocol import _Port, N1
from ra_actors.actors.protocol import Pipeline, PipelinedColumns, PipelinedCommand
from ra_actors.actors.stream import wire_codec
from ra_actors.bench.ra_bench import payload
port = _Port()
port.shell.deliver = lambda msg: None
port.router.send_to_client = lambda h, m: None
key = "0123456789abcdef0123/null0@n1"
batches = [tuple(PipelinedCommand(b * 256 + i, payload(i), "normal", key, b * 256 + i + 1, b * 256 + 1, True)
                 for i in range(256)) for b in range(400)]
if "--columns" in sys.argv:
    batches = [PipelinedColumns(tuple(c.correlation for c in cmds), tuple(c.data for c in cmds),
                                tuple(c.priority for c in cmds), key, tuple(c.seq for c in cmds), cmds[0].low,
                                tuple(c.known for c in cmds))
               for cmds in batches]
WIRE = "--wire" in sys.argv
codec = wire_codec()
frames = [codec.pack(Pipeline("client:n1:abc", cmds, N1)) for cmds in batches]
answers = [[(c.correlation, None) for c in cmds] for cmds in batches]
def run():
    t0 = time.process_time()
    for cmds, frame, answer in zip(batches, frames, answers):
        port._on_pipeline(codec.unpack(frame) if WIRE else Pipeline("client:n1:abc", cmds, N1), "client-address")
        # answered: as applied() does
        port.applied("client:n1:abc", N1, answer)
    return (time.process_time() - t0) / (400 * 256) * 1e6
run()
r = sorted(run() for _ in range(5)); print("leader port us/command (on_pipeline + applied): %.2f" % r[2])
