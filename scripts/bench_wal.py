#!/usr/bin/env python3
"""Benchmark the WAL against a bare ``os.write`` + ``os.fdatasync`` loop.

Usage::

    scripts/bench_wal.py [--records N] [--batch B ...] [--dir D --keep]
                         [--sync-method datasync|sync|none] [--payload-bytes 100]
    scripts/bench_wal.py --clusters C [--wal-dir D1 --wal-dir D2] [--seconds S]
                         [--repeats R] [--sync-method ...] [--payload-bytes 100]

For each batch size (default 1, 10, 100, 1000) it writes N records of
``--payload-bytes`` bytes in batches of B (one write + one sync per batch) and
measures durable records/s and syncs/s.  In the same run, interleaved in
chunks so both see the same disk, a bare loop writes the very same number of
bytes per batch with ``os.write`` + ``os.fdatasync`` (the floor any WAL pays);
the ratio printed is bare time / WAL time.  Two WAL modes are measured:

* ``wal``          ``wal.append_run(...)`` + ``wal.flush()``: the WAL process
                   computes every record's crc32 and the record table itself;
* ``pre-encoded``  the servers encode (``Wal.encode_run`` in their own
                   processes, as payload msgpacking already is), the WAL verifies
                   the record table, writes and syncs (``append_encoded`` + ``flush``).

``--clusters C`` compares one WAL with two (a node's ``wal_dirs``): C
writer threads, each a cluster that appends one record and waits until it
is durable, again and again for ``--seconds``; with one WAL all C share one
WAL and its sync thread, with two each writer goes to the WAL its uid hashes
to (``crc32``, as a node assigns servers), each WAL with its own sync
thread, so two disks sync in parallel.  The runs alternate (one WAL, two
WALs, ``--repeats`` times) and the medians are printed: durable records/s,
syncs/s and the mean batch (records per sync) of each WAL.  ``--wal-dir``
twice puts the two WALs on those directories (two disks: the point of two
WALs; the one-WAL run uses the first); by default both are temporary
directories on the same disk, which the output says.  Only the WAL is
measured (no Raft, no messages): an upper bound on what a node gains.

With ``--dir D --keep`` the WAL is written into the node data directory D
(one writer uid per batch size and mode) and left there, so that
``ra-actors log check D`` can inspect it; otherwise a temporary directory is
used and removed.  The bare loop's file never stays.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ra_actors.log.wal import Wal  # noqa: E402
from ra_actors.log.wal_dirs import choose_wal  # noqa: E402


def make_batches(n_records: int, batch: int, payload: bytes, first_index: int = 1) -> list:
    """``[(first_index, [payload, ...]), ...]``: the columns a server hands its WAL."""
    batches = []
    i = first_index
    remaining = n_records
    while remaining > 0:
        k = min(batch, remaining)
        # Distinct bytes objects, as msgpacked commands would be.
        batches.append((i, [bytes(payload) for _ in range(k)]))
        i += k
        remaining -= k
    return batches


class BareLoop:
    """``os.write`` + ``os.fdatasync`` of given sizes on a scratch file: the floor."""

    def __init__(self, path: Path, sync_method: str):
        self.path = path
        self.sync_method = sync_method
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def run(self, sizes: list[int]) -> float:
        bufs = [b"x" * n for n in sizes]
        fd = self.fd
        t0 = time.perf_counter()
        for buf in bufs:
            os.write(fd, buf)
            if self.sync_method == "datasync":
                os.fdatasync(fd)
            elif self.sync_method == "sync":
                os.fsync(fd)
        return time.perf_counter() - t0

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink(missing_ok=True)


def run_mode(wal: Wal, uid: str, batches: list, mode: str, bare: BareLoop,
             chunk: int) -> tuple[float, float]:
    """Time our WAL and the bare loop on the same batches, interleaved in chunks (and
    alternating which goes first) so that both see the same disk weather.  Returns
    ``(ours_seconds, bare_seconds)``."""
    ours = bare_t = 0.0
    for k, c in enumerate(range(0, len(batches), chunk)):
        part = batches[c:c + chunk]
        # The bare loop writes exactly the bytes our encoding produces.
        sizes = [len(Wal.encode_run(uid, first, 1, payloads).blob)
                 + 24 * len(payloads) + 22 for first, payloads in part]
        if k % 2:
            bare_t += bare.run(sizes)
        if mode == "wal":
            t0 = time.perf_counter()
            for first, payloads in part:
                wal.append_run(uid, first, 1, payloads)
                res = wal.flush()
            ours += time.perf_counter() - t0
        else:
            # Producers (the servers, in their own processes) encode; the WAL
            # process only verifies the record table, writes and syncs.
            encoded = [Wal.encode_run(uid, first, 1, payloads) for first, payloads in part]
            t0 = time.perf_counter()
            for enc in encoded:
                wal.append_encoded(enc)
                res = wal.flush()
            ours += time.perf_counter() - t0
        assert res.written[uid][-1][2] == part[-1][0] + len(part[-1][1]) - 1
        if not k % 2:
            bare_t += bare.run(sizes)
    return ours, bare_t


class _SyncedWal:
    """One WAL and its sync thread: flush whatever the writers queued, wake
    the writers whose records became durable (a node's WAL service, without
    the actor)."""

    def __init__(self, data_dir: Path, wal_dir: Path, sync_method: str):
        import threading
        self.wal = Wal(data_dir, sync_method=sync_method, max_size_bytes=1 << 40, wal_dir=wal_dir)
        self.waiting: dict = {}          # uid -> Event, set when its record is durable
        self.work = threading.Event()
        self.stop = False
        self.batches = 0
        self.records = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            self.work.wait(0.1)
            self.work.clear()
            result = self.wal.flush()
            if result.synced:
                self.batches += 1
                self.records += result.records
            for uid in result.written:
                self.waiting[uid].set()

    def close(self) -> None:
        self.stop = True
        self.work.set()
        self.thread.join(5)
        self.wal.close()


def run_clusters(data_dir: Path, wal_dirs: list, clusters: int, seconds: float, payload: bytes,
                 sync_method: str, run: int) -> dict:
    """One run of the ``--clusters`` mode (see the module docstring):
    ``{"records_s", "syncs_s", "per_sync": [mean records per sync of each WAL]}``."""
    import threading
    wals = [_SyncedWal(data_dir, d, sync_method) for d in wal_dirs]
    deadline = time.perf_counter() + seconds
    done = [0] * clusters

    def writer(k: int) -> None:
        uid = f"n{len(wals)}_c{k}"   # (each run has WAL directories of its own)
        w = wals[choose_wal(uid, len(wals))]
        ready = w.waiting[uid] = threading.Event()
        index = 1
        while time.perf_counter() < deadline:
            ready.clear()
            w.wal.append_encoded(Wal.encode_run(uid, index, 1, [payload]))
            w.work.set()
            ready.wait()
            index += 1
        done[k] = index - 1

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(clusters)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for w in wals:
        w.close()
    for d in wal_dirs:
        shutil.rmtree(d, ignore_errors=True)
    return {"records_s": sum(done) / elapsed, "syncs_s": sum(w.batches for w in wals) / elapsed,
            "per_sync": [w.records / max(1, w.batches) for w in wals],
            "writers": [len(w.waiting) for w in wals]}


def clusters_main(args) -> int:
    """``--clusters C``: one WAL against two (see the module docstring)."""
    import statistics
    root = Path(tempfile.mkdtemp(prefix="bench_wal_clusters_"))
    given = [Path(d) for d in args.wal_dir or []]
    if given and len(given) != 2:
        print("--wal-dir: give two directories (one per disk), or none")
        return 2
    bases = given or [root / "disk1", root / "disk2"]
    payload = (bytes(range(256)) * (args.payload_bytes // 256 + 1))[:args.payload_bytes]
    print(f"{args.clusters} clusters, each appending one {args.payload_bytes}-byte record and waiting "
          f"until it is durable, for {args.seconds} s per run, {args.repeats} runs per WAL count, "
          f"sync_method={args.sync_method}")
    print(f"WAL directories: {bases[0]} and {bases[1]}"
          + ("" if given else " (the same disk: two WALs cannot sync in parallel there)"))
    results: dict = {1: [], 2: []}
    try:
        for r in range(args.repeats):
            for n in (1, 2):
                dirs = [bases[k] / f"bench-{r}-{n}-{k}" for k in range(n)]
                results[n].append(run_clusters(root, dirs, args.clusters, args.seconds, payload,
                                               args.sync_method, r))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    one = statistics.median(x["records_s"] for x in results[1])
    print(f"{'WALs':>4} {'writers':>9} {'records/s':>12} {'syncs/s':>10} {'records per sync (each WAL)':>30} "
          f"{'vs one':>7}")
    for n in (1, 2):
        rec = statistics.median(x["records_s"] for x in results[n])
        syncs = statistics.median(x["syncs_s"] for x in results[n])
        per = [statistics.median(x["per_sync"][k] for x in results[n]) for k in range(n)]
        writers = results[n][0]["writers"]   # (the same split in every run: the uids are hashed)
        print(f"{n:>4} {'/'.join(map(str, writers)):>9} {rec:>12,.0f} {syncs:>10,.0f} "
              f"{' / '.join(f'{p:.1f}' if w else '-' for p, w in zip(per, writers)):>30} {rec / one:>7.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20000, help="records per run (default 20000)")
    ap.add_argument("--batch", type=int, action="append",
                    help="batch size (repeatable; default 1, 10, 100, 1000)")
    ap.add_argument("--dir", help="node data directory to write the WAL into")
    ap.add_argument("--keep", action="store_true", help="leave the WAL in --dir")
    ap.add_argument("--sync-method", default="datasync", choices=["datasync", "sync", "none"])
    ap.add_argument("--payload-bytes", type=int, default=100)
    ap.add_argument("--max-records-batch1", type=int, default=None,
                    help="cap the records of the batch-1 run (default: --records)")
    ap.add_argument("--clusters", type=int, help="compare one WAL with two for this many writers "
                                                 "(clusters); see the module docstring")
    ap.add_argument("--wal-dir", action="append", help="with --clusters: the two WAL directories")
    ap.add_argument("--seconds", type=float, default=3.0, help="with --clusters: seconds per run")
    ap.add_argument("--repeats", type=int, default=3, help="with --clusters: runs per WAL count")
    args = ap.parse_args(argv)
    if args.clusters:
        return clusters_main(args)
    if args.keep and not args.dir:
        ap.error("--keep needs --dir")
    batches_sizes = args.batch or [1, 10, 100, 1000]
    data_dir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_wal_"))
    data_dir.mkdir(parents=True, exist_ok=True)
    payload = bytes(range(256)) * (args.payload_bytes // 256 + 1)
    payload = payload[:args.payload_bytes]
    print(f"WAL benchmark: {args.records} records of {args.payload_bytes} bytes per run, "
          f"sync_method={args.sync_method}, dir={data_dir}")
    header = (f"{'batch':>6} {'mode':>12} {'records/s':>12} {'syncs/s':>10} "
              f"{'bare rec/s':>12} {'bare syncs/s':>12} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    wal = Wal(data_dir, sync_method=args.sync_method, max_size_bytes=1 << 40)
    bare = BareLoop(data_dir / "bare-loop.tmp", args.sync_method)
    try:
        for batch in batches_sizes:
            n = args.records
            if batch == 1 and args.max_records_batch1:
                n = min(n, args.max_records_batch1)
            for mode in ("wal", "pre-encoded"):
                uid = f"bench-b{batch}-{mode}"
                batches = make_batches(n, batch, payload)
                chunk = max(1, min(50, len(batches) // 10))
                ours, bare_t = run_mode(wal, uid, batches, mode, bare, chunk)
                nb = len(batches)
                print(f"{batch:>6} {mode:>12} {n / ours:>12,.0f} {nb / ours:>10,.0f} "
                      f"{n / bare_t:>12,.0f} {nb / bare_t:>12,.0f} {bare_t / ours:>6.2f}", flush=True)
    finally:
        bare.close()
        wal.close()
        if not args.keep:
            if args.dir:
                shutil.rmtree(data_dir / "wal", ignore_errors=True)
                (data_dir / "LOCK").unlink(missing_ok=True)
            else:
                shutil.rmtree(data_dir, ignore_errors=True)
    print("ratio = bare-loop time / WAL time for the same batches and bytes, interleaved "
          "(1.0 = as fast as write + sync alone)")
    print("modes: wal = the WAL encodes (crc32 per record, record table) and writes; "
          "pre-encoded = servers encode in their own processes (Wal.encode_run), the WAL "
          "verifies the table, writes and syncs")
    if args.keep:
        print(f"WAL kept in {data_dir}/wal (check it with: ra-actors log check {data_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
