"""The cluster secret (the "cookie"): where it lives, how it is made and read.

Every node and client of a convention holds the same secret and proves it
on every TCP connection (:mod:`ra_actors.actors.handshake`), as Erlang
nodes share ``~/.erlang.cookie``.

Rules:

* **Where.**  ``cookie_file=`` (``--cookie-file``) when given, else
  ``$RA_ACTORS_COOKIE_FILE``, else ``~/.ra_actors.cookie``.
  ``local_nodes`` keeps one of its own in its data root.
* **Made once.**  The first node that starts its own convention creates the
  file when it does not exist (32 random bytes, base64: 43 characters),
  mode 0600, never overwriting one; a node joining a convention, or a
  client, never creates one (a fresh secret could only be wrong).
* **Read strictly.**  A cookie file must be a regular file owned by the
  current user and readable by nobody else (no group or other permission
  bits, as Erlang insists), holding at least ``MIN_LENGTH`` printable
  characters; surrounding whitespace is ignored.  Anything else is a
  ``CookieError`` naming the file and the fix.
* The secret itself never goes into an environment variable, a command
  line, a log or an error message.
"""
from __future__ import annotations

import base64
import os
import secrets
import stat

from .errors import CookieError

__all__ = ["ENV", "DEFAULT_NAME", "MIN_LENGTH", "cookie_path", "new_cookie", "create_cookie", "read_cookie",
           "ensure_cookie"]

ENV = "RA_ACTORS_COOKIE_FILE"
DEFAULT_NAME = ".ra_actors.cookie"
MIN_LENGTH = 16
MAX_LENGTH = 4096


def cookie_path(cookie_file: str | os.PathLike | None = None) -> str:
    """The cookie file to use (see the module rules), as an absolute path."""
    if cookie_file:
        return os.path.abspath(os.fspath(cookie_file))
    env = os.environ.get(ENV)
    if env:
        return os.path.abspath(env)
    return os.path.join(os.path.expanduser("~"), DEFAULT_NAME)


def new_cookie() -> str:
    """A fresh secret: 32 random bytes as unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def create_cookie(path: str) -> bool:
    """Create ``path`` with a fresh secret, mode 0600, unless it exists;
    True if it was created."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise CookieError(f"cannot create the cookie file {path}: {exc.strerror}") from None
    try:
        os.write(fd, (new_cookie() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def read_cookie(path: str) -> bytes:
    """The secret in ``path`` (see the module rules for what is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise CookieError(f"no cookie file {path}: copy the cluster's cookie file there (mode 0600), "
                          f"or name it with cookie_file= / --cookie-file / ${ENV}") from None
    except OSError as exc:
        raise CookieError(f"cannot read the cookie file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CookieError(f"the cookie file {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise CookieError(f"the cookie file {path} belongs to another user (uid {st.st_uid})")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise CookieError(f"the cookie file {path} is readable by other users "
                              f"(mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}")
        data = os.read(fd, MAX_LENGTH + 1)
    finally:
        os.close(fd)
    text = data.strip()
    if len(data) > MAX_LENGTH or not text.isascii() or not all(32 < c < 127 for c in text):
        raise CookieError(f"the cookie file {path} must hold one line of printable ASCII "
                          f"(at most {MAX_LENGTH} characters)")
    if len(text) < MIN_LENGTH:
        raise CookieError(f"the cookie in {path} is shorter than {MIN_LENGTH} characters")
    return bytes(text)


def ensure_cookie(path: str) -> bytes:
    """The secret in ``path``, created first if there is none."""
    create_cookie(path)
    return read_cookie(path)
