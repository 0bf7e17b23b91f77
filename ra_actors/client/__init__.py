"""The parts of a client (:class:`ra_actors.api.Client` is the public face).

One room per concern, each behind the one below it::

    ra_actors.api.Client          the public calls: check arguments, build request records
      clusters                    start/stop/delete servers and clusters (supervisor calls, elections)
      commands                    process_command: a numbered command, sent until answered
      pipelining                  numbered pipelined commands: batches, resends, one result each
      resolution                  server calls: address lookups, leader redirects, retries, timeouts
      sessions                    the session: numbers, low, known (no I/O)
      discovery                   nodes: bootstrap from admin addresses, node table, supervisor calls
      connection                  the endpoint, request ids, replies and events as they arrive
      addresses                   what the client knows: nodes, server addresses, clusters
      ids, replies                server ids and actor refs as given; Error records -> exceptions
    ra_actors.actors.endpoint     the transport (the only Thespian a client touches)

Rules:

* Imports point down this list; nothing here imports :mod:`ra_actors.api`,
  and nothing here imports Thespian (the endpoint does, and it is imported
  only when a client connects).
* Every request is a typed record of :mod:`ra_actors.actors.protocol`
  (``ClientRequest`` subclasses to servers, ``SupervisorRequest``
  subclasses to supervisors); every answer a typed record.
* Every call ends by its deadline; what a missing answer means (retry,
  redirect, ``Timeout``) is decided in :mod:`.resolution` and
  :mod:`.discovery` only.
* Not thread-safe, like the client.
"""
