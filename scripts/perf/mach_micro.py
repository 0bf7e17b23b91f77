"""Machine.apply of the null machine per command (medians of 5)."""
import time
from ra_actors.core.machine import Machine
import ra_actors.bench.null_machine as nm
mach = Machine(nm)
st = mach.init({})
def run():
    s = st
    t0 = time.process_time()
    for i in range(100000):
        s, r, e = mach.apply(0, None, b"x" * 16, s)
    return (time.process_time() - t0) / 100000 * 1e6
run(); r = sorted(run() for _ in range(5)); print("Machine.apply us %.3f" % r[2])
