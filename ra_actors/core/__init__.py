"""The Raft server as a pure state machine (Ra's ``ra_server``).

Rules of this package:

* no I/O, no clock, no randomness and no thespian import: time and random
  choices arrive inside messages or as values injected by the shell;
* a server consumes one message at a time and returns ``(role, effects)``:
  the effects are plain data (see :mod:`ra_actors.core.effects`) that the
  shell (the Thespian actor, or the simulator) carries out in order;
* the same code runs under the deterministic simulator and under Thespian.
"""
