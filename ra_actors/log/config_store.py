"""Persisted server configurations, so ``restart_server`` needs nothing but the disk.

File ``<data_dir>/servers/<uid>/config``: b"RACF" v1 framing
(:func:`.common.encode_checked_file`) around ``codec.pack(ServerConfig)``.

Rules:

* The config is written durably (tmp + fsync + rename + dir fsync) when a
  server is created, before any of its entries reach the WAL; a server
  directory is what makes a uid "known" on the node (the segment writer
  drops records of unknown uids).
* ``list_configs`` returns every server configured on the node (to restart
  them all after a node restart); a corrupt config is LogCorruption, never
  skipped.
* File I/O goes through :mod:`.fileio`; a refused write is StorageError.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..codec import pack, unpack
from ..core.types import ServerConfig
from ..errors import LogCorruption
import ra_actors.log.fileio as fileio
from .common import (LogUsageError, atomic_write, encode_checked_file, iter_server_uids,
                     read_checked_file, server_dir)

__all__ = ["save_config", "load_config", "list_configs", "config_path"]

MAGIC = b"RACF"
VERSION = 1


def config_path(data_dir: str | os.PathLike, uid: str) -> Path:
    return server_dir(data_dir, uid) / "config"


def save_config(data_dir: str | os.PathLike, config: ServerConfig) -> Path:
    """Durably write ``config`` (creating the server directory if needed)."""
    if not isinstance(config, ServerConfig):
        raise LogUsageError(f"expected a ServerConfig, not {type(config).__name__}")
    path = config_path(data_dir, config.uid)
    fileio.mkdir(path.parent)
    atomic_write(path, encode_checked_file(MAGIC, VERSION, pack(config)))
    return path


def load_config(data_dir: str | os.PathLike, uid: str) -> ServerConfig:
    path = config_path(data_dir, uid)
    body = read_checked_file(path, MAGIC, VERSION)
    try:
        config = unpack(body)
    except Exception as exc:
        raise LogCorruption(f"config does not decode: {exc}", str(path)) from None
    if not isinstance(config, ServerConfig):
        raise LogCorruption(f"config holds a {type(config).__name__}, not a ServerConfig", str(path))
    return config


def list_configs(data_dir: str | os.PathLike) -> list[ServerConfig]:
    """Configs of every server on the node that has one, sorted by uid."""
    out = []
    for uid in iter_server_uids(data_dir):
        if config_path(data_dir, uid).exists():
            out.append(load_config(data_dir, uid))
    return out
