"""Pipelined throughput and CPU per command, placement shared: the shape of
scripts/bench.py's "ra_actors shared" W=1024 row (three local nodes, the null
machine, 16-byte commands, WAL datasync, one client), for A/B runs.

    python scripts/perf/ab.py SECONDS [REPEATS] [--spy OUTDIR] [--cpu]

Prints per run: ops/s and CPU microseconds per command (all node processes
plus this client; the leader's host; a follower's host on average; the
client).  CPU per command is what to compare on a loaded machine: ops/s
then depends on the scheduler.  ``--spy OUTDIR``: py-spy (``pip install
py-spy``) records each node's busiest process during the (first) run,
raw format, summarised by spysum.py / spycallers.py.  Everything started
is stopped by local_nodes.
"""
import os, shutil, subprocess, sys, tempfile, time
import psutil
import ra_actors as ra
from ra_actors import events as ev
from ra_actors.bench.ra_bench import NULL_MACHINE, payload
args = sys.argv[1:]
SPY = None
if "--spy" in args:
    i = args.index("--spy"); SPY = args[i + 1]; del args[i:i + 2]
CPU = "--cpu" in args
if CPU: args.remove("--cpu")
DUR = float(args[0]) if args else 4.0
REP = int(args[1]) if len(args) > 1 else 1
W = 1024
PYSPY = os.path.join(os.path.dirname(sys.executable), "py-spy")   # pip install py-spy
root = tempfile.mkdtemp(prefix="perfpipe-")
try:
    with ra.local_nodes(["n1", "n2", "n3"], data_root=root, log_options={"sync_method": "datasync"},
                        placement="shared", allowed_modules=["ra_actors.bench"]) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("null0", n) for n in ("n1", "n2", "n3")]
        c.start_cluster("null0", NULL_MACHINE, sids, timeout=60.0)
        leader = None
        while leader is None:
            try:
                leader = c.members(sids[0])[1]
            except Exception:
                time.sleep(0.2)
        c.process_command(leader, payload(0), timeout=10)
        seq = [0]
        done = [0]
        def run(dur):
            sent = acked = 0
            t0 = time.perf_counter(); stop = t0 + dur; tl = t0
            while True:
                now = time.perf_counter()
                if now < stop:
                    while sent - acked < W:
                        sent += 1; seq[0] += 1
                        c.pipeline_command(leader, payload(seq[0]), seq[0])
                elif acked >= sent:
                    break
                for e in c.events(timeout=1.0):
                    if isinstance(e, ev.Applied):
                        acked += len(e.results); tl = time.perf_counter()
                    elif isinstance(e, (ev.Rejected, ev.TimedOut)):
                        print("!!", e, file=sys.stderr)
            done[0] = acked
            return acked / (tl - t0)
        run(1.0)   # warm-up
        pids = {n: nodes.pids(n) for n in ("n1", "n2", "n3")}
        procs = {p: psutil.Process(p) for ps in pids.values() for p in ps}
        me = psutil.Process()
        spies = []
        if SPY:
            os.makedirs(SPY, exist_ok=True)
            cpu_a = {p: sum(pr.cpu_times()[:2]) for p, pr in procs.items()}
            run(1.0)
            cpu_b = {p: sum(pr.cpu_times()[:2]) for p, pr in procs.items()}
            for n, ps in pids.items():
                for p in [max(ps, key=lambda p: cpu_b[p] - cpu_a[p])]:
                    spies.append(subprocess.Popen([PYSPY, "record", "--pid", str(p), "--duration", str(int(DUR)),
                                                   "--format", "raw", "--nonblocking", "--rate", "200",
                                                   "-o", f"{SPY}/{n}-{p}.txt"],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(0.5)
        for _ in range(REP):
            cpu0 = {p: sum(pr.cpu_times()[:2]) for p, pr in procs.items()}; m0 = sum(me.cpu_times()[:2])
            t0 = time.perf_counter()
            r = run(DUR)
            dt = time.perf_counter() - t0
            cpu1 = {p: sum(pr.cpu_times()[:2]) for p, pr in procs.items()}; m1 = sum(me.cpu_times()[:2])
            n = done[0]
            leader_node = leader.node
            hosts = {nn: max(ps, key=lambda p: cpu1[p] - cpu0[p]) for nn, ps in pids.items()}
            lead_us = (cpu1[hosts[leader_node]] - cpu0[hosts[leader_node]]) / n * 1e6
            foll_us = sum(cpu1[hosts[nn]] - cpu0[hosts[nn]] for nn in hosts if nn != leader_node) / 2 / n * 1e6
            nodes_us = sum(cpu1[p] - cpu0[p] for p in procs) / n * 1e6
            print(f"{r:.0f} ops/s  cpu us/cmd: total {nodes_us + (m1 - m0) / n * 1e6:.1f} leader {lead_us:.1f} "
                  f"follower {foll_us:.1f} client {(m1 - m0) / n * 1e6:.1f}", flush=True)
            if CPU:
                for n, ps in pids.items():
                    print(" ", n, " ".join(f"{p}:{(cpu1[p]-cpu0[p])/dt:.2f}({procs[p].name()[:12]})" for p in ps
                                           if cpu1[p] - cpu0[p] > 0.01 * dt), file=sys.stderr)
                print("  client", f"{(m1-m0)/dt:.2f}", file=sys.stderr)
        for s in spies:
            s.wait()
finally:
    shutil.rmtree(root, ignore_errors=True)
