"""ra_actors: Ra (RabbitMQ's Raft library) on the Thespian actor framework."""
from .core.types import ServerId  # noqa: F401

__version__ = "0.1.0"
