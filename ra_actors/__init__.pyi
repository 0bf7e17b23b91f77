"""Type information of ``ra_actors`` for type checkers (PEP 561).

Rule: ``__init__.py`` imports its public names lazily (a module
``__getattr__``, so that importing the package does not import Thespian),
which a type checker cannot follow; this stub declares the same names
with their real types.  It lists exactly ``ra_actors.__all__`` (and
``codec``), no ``__getattr__``: a misspelt name is an error for the checker
as it is at run time.  ``tests/test_typing.py`` keeps the two in step.
"""
from . import aio as aio, codec as codec, errors as errors, events as events
from .actors.protocol import ActorInit as ActorInit
from .api import Client as Client, connect as connect
from .core.types import ActorRef as ActorRef, ServerId as ServerId
from .events import Applied as Applied, Message as Message, Rejected as Rejected
from .nodes import (LocalNodes as LocalNodes, Node as Node, local_nodes as local_nodes,
                    node_status as node_status, start_node as start_node, stop_node as stop_node)

__version__: str
__all__: list[str]
