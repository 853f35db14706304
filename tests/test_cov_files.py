"""qgrey.files and python3 -m qgrey.launcher where the other tests do not
reach: a read past its bound, a write that cannot be renamed into place,
the launcher's usage error and write failure (qgrey(8), EXIT STATUS)."""
import os
import stat
import subprocess
import sys

import pytest

from qgrey import files


def test_read_fd_refuses_more_than_the_limit():
    r, w = os.pipe()
    try:
        os.write(w, b"x" * 11)
        os.close(w)
        w = None
        with pytest.raises(files.Refused) as caught:
            files.read_fd(r, 10, "/some/path")
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    assert caught.value.errno == 27  # EFBIG
    assert caught.value.strerror == "larger than 10 bytes"
    assert caught.value.filename == "/some/path"


def test_read_fd_reads_exactly_the_limit():
    r, w = os.pipe()
    os.write(w, b"0123456789")
    os.close(w)
    try:
        assert files.read_fd(r, 10) == b"0123456789"
    finally:
        os.close(r)


def test_a_file_whose_size_says_nothing_is_bounded_by_what_is_read():
    # /proc files are regular files of st_size 0: only reading finds their length.
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(files.Refused) as caught:
        files.read_regular("/proc/self/status", 16)
    assert (caught.value.errno, caught.value.strerror) == (27, "larger than 16 bytes")


def test_replace_without_sync_writes_data_and_mode(tmp_path):
    path = str(tmp_path / "f")
    files.replace(path, b"data\n", 0o640, sync=False)
    with open(path, "rb") as f:
        assert f.read() == b"data\n"
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o640
    assert os.listdir(str(tmp_path)) == ["f"]


def test_replace_that_cannot_rename_leaves_nothing_behind(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "inside").write_bytes(b"")
    with pytest.raises(IsADirectoryError):
        files.replace(str(target), b"data")
    assert sorted(os.listdir(str(tmp_path))) == ["d"]
    assert os.listdir(str(target)) == ["inside"]


def launcher_command(*args):
    return subprocess.run([sys.executable, "-m", "qgrey.launcher"] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True, cwd="/", timeout=120)


USAGE = b"usage: python3 -m qgrey.launcher [--data] PATH\n"


@pytest.mark.parametrize("args", [[], ["--data"], ["-x"], ["--data", "-x"], ["a", "b"],
                                  ["--data", "a", "b"]])
def test_launcher_usage_error(args, tmp_path):
    result = launcher_command(*args)
    assert (result.returncode, result.stdout, result.stderr) == (100, b"", USAGE)


@pytest.mark.parametrize("data", [False, True])
def test_launcher_cannot_write(data, tmp_path):
    target = str(tmp_path / "missing" / "qgrey")
    result = launcher_command(*(["--data"] if data else []) + [target])
    assert result.returncode == 111
    assert result.stdout == b""
    assert result.stderr == ("qgrey.launcher: fatal: cannot write %s: No such file or directory\n"
                             % target).encode()
    assert os.listdir(str(tmp_path)) == []


def test_a_link_to_a_device_is_refused_unopened(tmp_path):
    link = str(tmp_path / "link")
    os.symlink("/dev/null", link)
    with pytest.raises(files.Refused) as caught:
        files.read_regular(link, 10, follow=True)
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        22, "not a regular file", link)
    with pytest.raises(OSError) as caught:  # not followed: the link itself (ELOOP)
        files.read_regular(link, 10)
    assert caught.value.errno == 40


def test_a_file_larger_than_the_limit_is_refused_by_its_size(tmp_path):
    path = str(tmp_path / "f")
    with open(path, "wb") as f:
        f.write(b"x" * 11)
    assert files.read_regular(path, 11) == b"x" * 11
    with pytest.raises(files.Refused) as caught:
        files.read_regular(path, 10)
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        27, "larger than 10 bytes", path)


def test_replace_sets_the_owner(tmp_path):
    from conftest import NOBODY, needs_root
    needs_root()
    path = str(tmp_path / "f")
    files.replace(path, b"x", 0o644, owner=(NOBODY, NOBODY))
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o644)
