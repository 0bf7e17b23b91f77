#!/usr/bin/env python3
"""Benchmark the WAL against a bare ``os.write`` + ``os.fdatasync`` loop.

Usage::

    scripts/bench_wal.py [--records N] [--batch B ...] [--dir D --keep]
                         [--sync-method datasync|sync|none] [--payload-bytes 100]

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
    args = ap.parse_args(argv)
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
