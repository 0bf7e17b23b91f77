"""The Thespian shell: the only package that imports Thespian.

Modules:

* :mod:`.node_main` — the processes of a node (keeper outside the node's
  process group; node-main, admin and actors inside it).
* :mod:`.admin` — the node's admin, extended with the well-known
  ``RaWhereIsSupervisor`` lookup (cross-node ``globalName`` is broken in
  Thespian 4.0.1, and only the admin has a fixed address).
* :mod:`.netpatch` — bind to the advertised address, never 0.0.0.0; refuse
  connections from non-member hosts.
* :mod:`.supervisor` — ``NodeSupervisor``: children, directory, monitors,
  node-pair heartbeats, node-level client operations.
* :mod:`.user_actors` — the supervisor's actors started by clients
  (``client.start_actor``): start, stop, restart, monitors, delivery.
* :mod:`.server` — ``ActorServerPort`` (a server's port on Thespian, both
  placements) and ``ServerActor`` (placement ``process``); the interpreter
  itself is :mod:`ra_actors.shell`.
* :mod:`.host` — ``HostActor`` (placement ``shared``): many servers and the
  node's WAL in one process.
* :mod:`.peers` — ``PeerRouter``: peers' and clients' addresses.
* :mod:`.storage` — WAL, segment-writer and snapshot-writer actors, and a
  server's view of its files (recovery).
* :mod:`.protocol` — the messages between them and clients.
"""
