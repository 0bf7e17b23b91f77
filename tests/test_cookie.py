"""The cluster secret's file (ra_actors.cookie) and the node-wide record of
refused connections (ra_actors.actors.refusals)."""
from __future__ import annotations

import os
import stat

import pytest

from ra_actors import errors
from ra_actors.actors.refusals import MAX_LOGGED, Refusals
from ra_actors.cookie import DEFAULT_NAME, ENV, cookie_path, create_cookie, ensure_cookie, read_cookie


def test_the_path_is_the_argument_else_the_environment_else_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(ENV, str(tmp_path / "env.cookie"))
    assert cookie_path(tmp_path / "given") == str(tmp_path / "given")
    assert cookie_path() == str(tmp_path / "env.cookie")
    monkeypatch.delenv(ENV)
    assert cookie_path() == str(tmp_path / "home" / DEFAULT_NAME)


def test_a_new_cookie_is_private_random_and_never_overwritten(tmp_path):
    path = str(tmp_path / "sub" / "cookie")
    assert create_cookie(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "sub").st_mode) == 0o700
    first = read_cookie(path)
    assert len(first) >= 40
    assert not create_cookie(path), "an existing cookie is kept"
    assert read_cookie(path) == first == ensure_cookie(path)
    other = str(tmp_path / "other")
    assert ensure_cookie(other) != first, "each new cookie is fresh"


def test_a_cookie_readable_by_others_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "cookie"
    create_cookie(str(path))
    os.chmod(path, 0o644)
    with pytest.raises(errors.CookieError, match="chmod 600"):
        read_cookie(str(path))


@pytest.mark.parametrize("content, why", [(b"short\n", "shorter"), (b"a b c d e f g h i j k l\n", "printable"),
                                          (b"\xff" * 40, "printable"), (b"x" * 5000, "printable")])
def test_a_cookie_that_is_not_one_line_of_enough_printable_ascii_is_refused(tmp_path, content, why):
    path = tmp_path / "cookie"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(errors.CookieError, match=why):
        read_cookie(str(path))


def test_a_missing_cookie_says_where_to_put_one(tmp_path):
    with pytest.raises(errors.CookieError, match="no cookie file .*cookie_file"):
        read_cookie(str(tmp_path / "absent"))


def test_a_cookie_that_is_a_symlink_or_a_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    create_cookie(str(real))
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(errors.CookieError):
        read_cookie(str(tmp_path / "link"))
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(errors.CookieError):
        read_cookie(str(tmp_path / "dir"))


# ------------------------------------------------------------- refusals
def test_refusals_are_counted_by_kind_and_logged_once_per_address():
    logged = []
    r = Refusals(log=logged.append)
    try:
        for _ in range(3):
            r.refused("secret", "10.0.0.7", "no proof")
        r.refused("host", "10.0.0.8", "not allowed")
        r.refused("secret", "10.0.0.8", "no proof")
        assert r.counts() == {"secret": 4, "host": 1, "busy": 0}
        assert len(logged) == 2 and "10.0.0.7" in logged[0] and "10.0.0.8" in logged[1]
        with pytest.raises(ValueError):
            r.refused("other", "10.0.0.7", "?")
    finally:
        r.close()


def test_refusals_in_forked_processes_add_up_and_log_once():
    """Every process of a node is forked from node-main: their refusals are
    one record (shared memory, locked)."""
    logged_r, logged_w = os.pipe()
    r = Refusals(log=lambda text: os.write(logged_w, text.encode() + b"\n"))
    children = []
    try:
        for i in range(4):
            pid = os.fork()
            if pid == 0:
                try:
                    for _ in range(50):
                        r.refused("secret", "192.0.2.9", "scan")
                finally:
                    os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        os.close(logged_w)
        lines = os.read(logged_r, 65536).decode().splitlines()
        assert r.counts()["secret"] == 200
        assert len(lines) == 1 and "192.0.2.9" in lines[0]
    finally:
        os.close(logged_r)
        r.close()


def test_refusals_remember_a_bounded_number_of_addresses():
    logged = []
    r = Refusals(log=logged.append)
    try:
        for i in range(MAX_LOGGED + 20):
            r.refused("secret", f"10.1.{i // 256}.{i % 256}", "scan")
        assert r.counts()["secret"] == MAX_LOGGED + 20
        assert len(logged) == MAX_LOGGED
    finally:
        r.close()
