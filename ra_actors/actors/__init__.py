"""The Thespian shell: the only package that imports Thespian.

Modules:

* :mod:`.node_main` — the processes of a node (keeper outside the node's
  process group; node-main, admin and actors inside it).
* :mod:`.admin` — the node's admin, extended with the well-known
  ``RaWhereIsSupervisor`` lookup (cross-node ``globalName`` is broken in
  Thespian 4.0.1, and only the admin has a fixed address).
* :mod:`.netpatch` — bind to the advertised address, never 0.0.0.0; refuse
  connections from non-member hosts.
* :mod:`.identify`, :mod:`.looppatch` — Thespian's per-message costs: its
  log descriptions of messages, the selector, lock and helpers of each
  pass of its loop.
* :mod:`.supervisor` — ``NodeSupervisor``, the node's root actor: a
  composition that routes each message and request to one of its parts:

  * :mod:`.supervision` — the node's servers: start, stop, restart, delete;
  * :mod:`.services` — the WAL, segment writer and snapshot writer actors;
  * :mod:`.registry` — the servers the node has data for
    (``node.servers.journal`` over ``node.servers.json``);
  * :mod:`.user_actors` — the actors clients start (``client.start_actor``);
  * :mod:`.directory` — name -> address, incarnation, status; ``Lookup``;
  * :mod:`.monitors` — ``Watch``/``Unwatch``/``WatchDown``, local and remote;
  * :mod:`.clients` — client handles attached through the node, liveness;
  * :mod:`.failure_detector` — node-pair heartbeats, nodes up and down;
  * :mod:`.transmit` — one heartbeat or probe in flight per target
    (Thespian internals);
  * :mod:`.children`, :mod:`.restart_policy`, :mod:`.node_context` — the
    child record, the one restart policy, what the parts share.
* :mod:`.server` — ``ActorServerPort`` (a server's port on Thespian, both
  placements) and ``ServerActor`` (placement ``process``); the interpreter
  itself is :mod:`ra_actors.shell`.
* :mod:`.host` — ``HostActor`` (placement ``shared``): many servers and the
  node's WAL in one process.
* :mod:`.peers` — ``PeerRouter``: peers' and clients' addresses.
* :mod:`.storage` — WAL, segment-writer and snapshot-writer actors, and a
  server's view of its files (recovery).
* :mod:`.protocol` — the messages between them and clients.
* :mod:`.endpoint` — a client's transport (the only Thespian a client
  touches; :mod:`ra_actors.client` is the rest of the client).
"""
