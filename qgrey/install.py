"""Install qgrey in a virtual environment of its own, with the system's
Python and nothing else: no pip, no network, no --break-system-packages.

    cd qgrey-X.Y && python3 -m qgrey.install [--prefix /opt/qgrey] [--bin /usr/local/bin]
                                             [--python /usr/bin/python3]

Debian 12 and Ubuntu 24.04 refuse `pip install` into the system Python
(PEP 668), and their python3 has no ensurepip unless python3-venv is
installed; qgrey needs neither, being standard library only. This makes
PREFIX a small virtual environment (pyvenv.cfg, bin/python3 and bin/python
linking to the interpreter, lib/pythonX.Y/site-packages), copies this qgrey
package into its site-packages and compiles it there with that interpreter
(the qmail user cannot write bytecode there, and a start that compiles
costs about twice as much), and writes PREFIX/bin:
  qgrey        the [rcpt] entry for control/smtpplugins (the fast launcher)
  qgrey-data   the [data] entry (GL_STAGE=data)
  qgrey-admin, qgrey-expire, qgrey-report
each starting PREFIX's Python with -I -S, and links the commands into BIN.
The man pages go to PREFIX/share/man/man8, linked from BIN/../share/man/man8.

The interpreter is the system's /usr/bin/python3 (not the python3 that runs
this), or --python PATH. Root installs what the qmail user runs and root's
tools run, so the installer trusts nothing it did not create:
- the interpreter, and every directory and link on its way (followed), must
  belong to root and be writable by no one else, and be reachable by other
  users (o+x), or the qmail user could not run it;
- the prefix, the bin and man directories and every directory above them
  must belong to root and be writable by no one else (a directory with the
  sticky bit, such as /tmp, may be above them);
- the prefix may hold only what an earlier install wrote: PREFIX/.qgrey-install
  lists each entry (kind, path, link target). An install made before that
  list existed is recognised by its layout (a venv with qgrey in it).
(Run as another user than root, that user is trusted as well as root.)
Anything else is refused in one line before anything is written. Every file
is written under a random name, created exclusively without following links,
and renamed into place; links likewise; directories are made, then checked
to be directories of ours. Running it again upgrades in place: the package
is replaced as a whole, the interpreter link rewritten, and whatever the
earlier install wrote and this one does not (a site-packages of another
Python version, for one) removed.

Exit status: 0 done; 100 usage, or refused (nothing written); 111 cannot write.
"""
import os
import shutil
import stat
import subprocess
import sys

from qgrey import files, launcher

TOOLS = (("qgrey-admin", "qgrey.admin"), ("qgrey-expire", "qgrey.expire"),
         ("qgrey-report", "qgrey.report"))
TOOL_TEMPLATE = '''#!{python} -IS
# {name}, written by: python3 -m qgrey.install
import sys
sys.path.insert(0, {path!r})
from {module} import main
main()
'''
USAGE = "usage: python3 -m qgrey.install [--prefix DIR] [--bin DIR] [--python PATH]\n"
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534  # who runs the interpreter to try it, when root installs
MANIFEST = ".qgrey-install"
MANIFEST_HEAD = ("# Written by python3 -m qgrey.install: what it wrote, one entry a line:\n"
                 "# kind (d directory, f file, l link, p package directory, L link outside\n"
                 "# the prefix), tab, path, and for a link: tab, target.\n")
# The names an install made before the manifest existed (venv.EnvBuilder,
# then the package, the launchers, the man pages) may hold. "N" stands for
# a Python minor version.
LEGACY = {
    "d": ("bin", "include", "include/python3.N", "lib", "lib/python3.N",
          "lib/python3.N/site-packages", "share", "share/man", "share/man/man8"),
    "f": ("pyvenv.cfg", ".gitignore", "bin/activate", "bin/activate.csh", "bin/activate.fish",
          "bin/Activate.ps1", "bin/qgrey", "bin/qgrey-data", "bin/qgrey-admin",
          "bin/qgrey-expire", "bin/qgrey-report", "share/man/man8/qgrey.8",
          "share/man/man8/qgrey-admin.8", "share/man/man8/qgrey-expire.8",
          "share/man/man8/qgrey-report.8"),
    "l": ("bin/python", "bin/python3", "bin/python3.N", "lib64"),
    "p": ("lib/python3.N/site-packages/qgrey",),
}
# What the interpreter says about itself: version and standard library.
ASK = ("import os, sys; sys.stdout.write('%d.%d.%d\\n%s\\n' "
       "% (sys.version_info[:3] + (os.path.dirname(os.__file__),)))")


class Refused(Exception):
    """One line saying what is refused and why; nothing has been written."""


def trusted():
    """The users whose files the installer trusts: root, and the user
    running it when that is not root."""
    uid = os.geteuid()
    return (0,) if uid == 0 else (0, uid)


def who():
    uid = os.geteuid()
    return "root" if uid == 0 else "root or uid %d" % uid


def traverse(path):
    """Resolve the absolute path as the kernel does, without trusting it ->
    (entries, real, missing): every entry looked up on the way, links
    followed, as (path, lstat) in order; the real path of the part that
    exists; the names below it that do not exist yet."""
    todo = [name for name in reversed(path.split("/")) if name not in ("", ".")]
    current, entries, links = "/", [("/", os.lstat("/"))], 0
    while todo:
        name = todo.pop()
        if name == "..":
            current = os.path.dirname(current)
            continue
        candidate = current.rstrip("/") + "/" + name
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            missing = [name] + todo[::-1]
            if ".." in missing:
                raise
            return entries, current, missing
        entries.append((candidate, st))
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(40, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = "/"
            todo.extend(name for name in reversed(target.split("/")) if name not in ("", "."))
        elif todo and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(20, "not a directory", candidate)
        else:
            current = candidate
    return entries, current, []


def check_entries(entries, option, given, reach=False, final_sticky=False, consequence=None):
    """Every entry belongs to a trusted user; no directory is writable by
    group or others (but one with the sticky bit above the last); with
    reach, every directory is searchable by others. -> the first directory
    others cannot search (reach=False), or None."""
    consequence = consequence or "another user could replace what is written there"
    unreachable = None
    for number, (path, st) in enumerate(entries):
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid not in trusted():
            raise Refused("%s %s: %s belongs to uid %d, not to %s: %s"
                          % (option, given, path, st.st_uid, who(), consequence))
        if not stat.S_ISDIR(st.st_mode):
            continue
        last = number == len(entries) - 1
        if mode & 0o022 and (not mode & stat.S_ISVTX or (last and not final_sticky)):
            raise Refused("%s %s: %s is writable by group or others (mode %04o): %s"
                          % (option, given, path, mode, consequence))
        if not mode & 0o001 and unreachable is None:
            unreachable = (path, mode)
            if reach:
                raise Refused("%s %s: %s is not reachable by other users (mode %04o): the qmail "
                              "user could not run it; choose one it can run, such as %s"
                              % (option, given, path, mode, SYSTEM_PYTHON))
    return unreachable


def check_interpreter(given):
    """Refused unless the qmail user can run the interpreter and nobody but
    root (or the installing user) can change it -> (version, X.Y)."""
    option = "--python"
    consequence = "another user could change what root and the qmail user run"
    try:
        entries, real, missing = traverse(given)
    except OSError as err:
        raise Refused("%s %s: %s" % (option, given, err.strerror or err))
    if missing:
        raise Refused("%s %s: no such file" % (option, given))
    check_entries(entries, option, given, reach=True, consequence=consequence)
    st = entries[-1][1]
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise Refused("%s %s: %s is not a regular file" % (option, given, real))
    if mode & 0o022:
        raise Refused("%s %s: %s is writable by group or others (mode %04o): %s"
                      % (option, given, real, mode, consequence))
    if not mode & 0o001:
        raise Refused("%s %s: %s is not executable by other users (mode %04o): the qmail user "
                      "could not run it; choose one it can run, such as %s"
                      % (option, given, real, mode, SYSTEM_PYTHON))
    # Its standard library is found beside it: look before running it.
    base = os.path.dirname(os.path.dirname(real))
    for name in ["lib"] + sorted("lib/" + entry for entry in listdir(base + "/lib")
                                  if entry.startswith("python")):
        try:
            st = os.lstat(base + "/" + name)
        except OSError:
            continue
        check_entries([(base + "/" + name, st)], option, given, final_sticky=False,
                      consequence=consequence)
    # Run by root, it is run as another user (as the qmail user will run it):
    # a library it needs may be where only root can go.
    other = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    try:
        done = subprocess.run([given, "-I", "-S", "-c", ASK], env={}, cwd="/", timeout=60,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, **other)
    except (OSError, subprocess.SubprocessError) as err:
        raise Refused("%s %s: cannot be run%s: %s" % (
            option, given, " by another user (uid %d)" % NOBODY if other else "", err))
    try:
        version, library = done.stdout.decode("ascii").split("\n")[:2]
        numbers = tuple(int(part) for part in version.split("."))
        if done.returncode or len(numbers) != 3 or not library.startswith("/"):
            raise ValueError("exit status %d" % done.returncode)
    except (ValueError, UnicodeError):
        said = done.stderr.decode("ascii", "replace").strip().splitlines()
        said = "".join(c if " " <= c <= "~" else "?" for c in said[-1][:300]) if said else ""
        raise Refused("%s %s: cannot be run%s as Python 3.9 or later (exit status %d%s)" % (
            option, given, " by another user (uid %d)" % NOBODY if other else "",
            done.returncode, ": " + said if said else ""))
    if numbers < (3, 9):
        raise Refused("%s %s: Python %s; qgrey needs 3.9 or later" % (option, given, version))
    try:
        entries, _, missing = traverse(library)
    except OSError as err:
        raise Refused("%s %s: %s: %s" % (option, given, library, err.strerror or err))
    if not missing:
        check_entries(entries, option, given, reach=True, consequence=consequence)
    return version, "%d.%d" % numbers[:2]


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def check_directory(option, given, path):
    """The directory path (made later if missing) and all above it ->
    (real path, first directory others cannot search or None)."""
    if any(char in path for char in "\t\n\r"):
        raise Refused("%s %r: a tab or line end in the path" % (option, given))
    try:
        entries, real, missing = traverse(os.path.abspath(path))
    except OSError as err:
        raise Refused("%s %s: %s" % (option, given, err.strerror or err))
    if not missing and not stat.S_ISDIR(entries[-1][1].st_mode):
        raise Refused("%s %s: %s is not a directory" % (option, given, real))
    unreachable = check_entries(entries, option, given, final_sticky=bool(missing))
    return "/".join([real.rstrip("/")] + missing) or "/", unreachable


def read_manifest(prefix, given):
    """PREFIX/.qgrey-install -> {path: [(kind, target), ...]}, or None if
    absent. (While an upgrade runs, a path is listed as it was and as it
    will be.)"""
    path = prefix + "/" + MANIFEST
    try:
        fd, st = files.open_regular(path, owners=trusted())
        try:
            data = files.read_fd(fd, 1 << 20, path)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise Refused("--prefix %s: %s: %s" % (given, path, files.describe(err)))
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise Refused("--prefix %s: %s is writable by group or others (mode %04o)"
                      % (given, path, stat.S_IMODE(st.st_mode)))
    entries = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        kind = fields[0]
        good = (len(fields) == (3 if kind in "lL" else 2) and len(kind) == 1 and kind in "dflpL"
                and fields[1] and fields[1].startswith("/") == (kind == "L")
                and ".." not in fields[1].split("/") and "" not in fields[1].split("/")[1:])
        if not good:
            raise Refused("--prefix %s: %s, line %d: not a line qgrey.install writes"
                          % (given, path, number))
        entries.setdefault(fields[1], []).append((kind, fields[2] if kind in "lL" else None))
    return entries


def legacy_kind(relative):
    """The kind an install made before the manifest wrote at relative, or None."""
    parts = relative.split("/")
    for index, part in enumerate(parts):
        if part.startswith("python3.") and part[8:].isdigit():
            parts[index] = "python3.N"
    pattern = "/".join(parts)
    for kind, names in LEGACY.items():
        if pattern in names:
            return kind
    return None


def is_temporary(name):
    """A name this installer writes under before renaming (.NAME.<16 hex>.tmp),
    left by an install that was interrupted."""
    parts = name.split(".")
    return (name.startswith(".") and name.endswith(".tmp") and len(parts) >= 4
            and len(parts[-2]) == 16 and all(c in "0123456789abcdef" for c in parts[-2]))


def kind_of(st):
    if stat.S_ISDIR(st.st_mode):
        return "d"
    if stat.S_ISLNK(st.st_mode):
        return "l"
    if stat.S_ISREG(st.st_mode):
        return "f"
    return "?"


def survey(prefix, given, manifest, legacy):
    """Refused if the existing prefix holds an entry the installer did not
    write, or one another user could change -> what is there: {relative
    path: (kind, link target or None)} (package directories whole, not
    their contents; kind t: a temporary an interrupted install left)."""
    found = {}

    def refuse_entry(path, why):
        raise Refused("--prefix %s: %s %s" % (given, path, why))

    def walk(directory, relative):
        for name in listdir(directory):
            path = directory + "/" + name
            rel = relative + name
            st = os.lstat(path)
            kind = kind_of(st)
            if rel == MANIFEST:
                continue
            if is_temporary(name):
                listed = "t"
            elif manifest is not None:
                target = os.readlink(path) if kind == "l" else None
                listed = None
                for entry in manifest.get(rel, ()):
                    if (entry[0] in "dp" and kind == "d") or entry == (kind, target):
                        listed = entry[0]
            elif legacy:
                listed = legacy_kind(rel)
                listed = listed if listed and (listed in "dp" and kind == "d" or listed == kind) else None
            else:
                listed = None
            if listed is None:
                refuse_entry(path, "was not written by qgrey.install (not listed in %s/%s): remove "
                             "it or choose another --prefix" % (prefix, MANIFEST))
            if st.st_uid not in trusted():
                refuse_entry(path, "belongs to uid %d, not to %s" % (st.st_uid, who()))
            if kind == "d" and stat.S_IMODE(st.st_mode) & 0o022:
                refuse_entry(path, "is writable by group or others (mode %04o)"
                             % stat.S_IMODE(st.st_mode))
            found[rel] = (listed, os.readlink(path) if kind == "l" else None)
            if listed == "d":
                walk(path, rel + "/")
            elif kind == "d":
                inside(path)

    def inside(directory):
        # A package directory, replaced whole: only who could change it matters.
        for name in listdir(directory):
            path = directory + "/" + name
            st = os.lstat(path)
            if st.st_uid not in trusted():
                refuse_entry(path, "belongs to uid %d, not to %s" % (st.st_uid, who()))
            if stat.S_ISDIR(st.st_mode):
                if stat.S_IMODE(st.st_mode) & 0o022:
                    refuse_entry(path, "is writable by group or others (mode %04o)"
                                 % stat.S_IMODE(st.st_mode))
                inside(path)

    walk(prefix, "")
    return found


def make_directory(path, own=True):
    """mkdir path unless it is there, then check, through a descriptor opened
    without following links, that it is a directory: ours and 0755 if own
    (its mode is set), else a trusted one no one else can write."""
    try:
        os.mkdir(path, 0o700)
        made = True
    except FileExistsError:
        made = False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        owners = (os.geteuid(),) if own or made else trusted()
        if st.st_uid not in owners or (not (own or made) and stat.S_IMODE(st.st_mode) & 0o022):
            raise PermissionError(1, "not a directory of %s only" % who(), path)
        if own or made:
            os.fchmod(fd, 0o755)
    except OSError as err:
        raise OSError(err.errno, err.strerror, path)
    finally:
        os.close(fd)


def make_directories(path, own=True):
    """Every missing directory down to path (checked by check_directory)."""
    parent = os.path.dirname(path)
    if not os.path.lexists(parent):
        make_directories(parent, own=False)
    make_directory(path, own)


def place_link(target, path):
    """The link path -> target, made under a random name and renamed into
    place (replacing a link, never following one)."""
    directory, _, name = path.rpartition("/")
    temporary = "%s/.%s.%s.tmp" % (directory, name, os.urandom(8).hex())
    os.symlink(target, temporary)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def remove(path):
    """Remove what the installer wrote at path, without following links."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def copy_package(source, target, python):
    """Copy the package source (without bytecode) to target, replacing it
    whole: written in a new directory, compiled there by python (the qmail
    user cannot write bytecode in it, and a start without it costs more),
    then swapped in."""
    parent = os.path.dirname(target)
    staging = "%s/.qgrey.%s.tmp" % (parent, os.urandom(8).hex())
    os.mkdir(staging, 0o700)
    try:
        for directory, subdirectories, names in os.walk(source):
            subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
            relative = os.path.relpath(directory, source)
            out = staging if relative == "." else staging + "/" + relative
            make_directory(out)
            for name in sorted(names):
                path = directory + "/" + name
                if name.endswith((".pyc", ".pyo")) or not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                with open(path, "rb") as f:
                    files.replace(out + "/" + name, f.read(), 0o644)
        compiled = subprocess.run(
            [python, "-I", "-S", "-m", "compileall", "-q", "-d", target, staging], env={},
            cwd="/", umask=0o022, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=300)
        if compiled.returncode:
            sys.stderr.write("qgrey.install: warning: %s could not compile qgrey (exit status "
                             "%d); it runs, but starts slower\n" % (python, compiled.returncode))
        old = None
        if os.path.lexists(target):
            old = "%s/.qgrey.%s.tmp" % (parent, os.urandom(8).hex())
            os.rename(target, old)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old)


def plan(prefix, python, minor, source, links_dir, man_links_dir):
    """What this install writes -> [(kind, path, target or None)], in order
    (relative paths inside the prefix; L: absolute links outside it)."""
    lib = "lib/python%s/site-packages" % minor
    entries = [("d", "bin", None), ("f", "pyvenv.cfg", None),
               ("l", "bin/python3", python), ("l", "bin/python", python),
               ("d", "lib", None), ("d", "lib/python%s" % minor, None), ("d", lib, None),
               ("p", lib + "/qgrey", None)]
    names = ["qgrey", "qgrey-data"] + [name for name, _ in TOOLS]
    entries += [("f", "bin/" + name, None) for name in names]
    pages = [page for page in listdir(os.path.join(os.path.dirname(source), "man"))
             if page.endswith(".8")]
    if pages:
        entries += [("d", "share", None), ("d", "share/man", None), ("d", "share/man/man8", None)]
        entries += [("f", "share/man/man8/" + page, None) for page in pages]
    if links_dir:
        entries += [("L", links_dir + "/" + name, prefix + "/bin/" + name) for name in names]
        entries += [("L", man_links_dir + "/" + page, prefix + "/share/man/man8/" + page)
                    for page in pages]
    return entries


def manifest_text(entries):
    lines = [MANIFEST_HEAD]
    for kind, path, target in entries:
        lines.append("%s\t%s\t%s\n" % (kind, path, target) if target else "%s\t%s\n" % (kind, path))
    return "".join(lines).encode()


def check_link(option, given, path, targets, manifest):
    """A link the install replaces at path (outside the prefix) must be
    absent, or a link to what it would write, or one an earlier install
    wrote."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        if target in targets or ("L", target) in (manifest or {}).get(path, ()):
            return
    raise Refused("%s %s: %s exists and was not written by qgrey.install: remove it or "
                  "choose another %s" % (option, given, path, option))


def install(options, source):
    """Check everything, then write -> (bin directory, names written)."""
    # The interpreter.
    python = options["--python"]
    if python is None:
        python = SYSTEM_PYTHON
        if not os.path.lexists(SYSTEM_PYTHON):
            python = getattr(sys, "_base_executable", None) or sys.executable
            sys.stderr.write("qgrey.install: warning: %s is missing; using %s (--python to "
                             "choose another)\n" % (SYSTEM_PYTHON, python))
    python = os.path.abspath(python)
    if any(char in python for char in "\t\n\r"):
        raise Refused("--python %r: a tab or line end in the path" % python)
    version, minor = check_interpreter(python)

    # Where it goes.
    given_prefix = options["--prefix"]
    prefix, unreachable = check_directory("--prefix", given_prefix, given_prefix)
    links_dir = man_links_dir = None
    if options["--bin"]:
        given_bin = options["--bin"]
        links_dir, _ = check_directory("--bin", given_bin, given_bin)
        if (links_dir + "/").startswith(prefix + "/") or (prefix + "/").startswith(links_dir + "/"):
            raise Refused("--bin %s: inside the prefix %s, or the prefix inside it"
                          % (given_bin, prefix))
        man = os.path.join(os.path.dirname(os.path.abspath(given_bin)), "share", "man", "man8")
        man_links_dir, _ = check_directory("--bin", given_bin, man)

    # What is there already.
    manifest = legacy = None
    exists = os.path.isdir(prefix)
    if exists:
        manifest = read_manifest(prefix, given_prefix)
        legacy = manifest is None and os.path.lexists(prefix + "/pyvenv.cfg")
        found = survey(prefix, given_prefix, manifest, legacy)
    else:
        found = {}
    entries = plan(prefix, python, minor, source, links_dir, man_links_dir)
    abs_prefix = os.path.abspath(given_prefix)
    for kind, path, target in entries:
        if kind == "L":
            check_link("--bin", options["--bin"], path,
                       (target, abs_prefix + target[len(prefix):]), manifest)
    if unreachable:
        sys.stderr.write("qgrey.install: warning: %s is not reachable by other users (mode "
                         "%04o): the qmail user cannot run what is installed in %s\n"
                         % (unreachable + (prefix,)))

    # Where it cannot write, say so before writing anything.
    for directory in (prefix, links_dir, man_links_dir):
        while directory and not os.path.lexists(directory):
            directory = os.path.dirname(directory)
        if directory and not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", directory)

    # Write: the manifest first lists both the earlier entries and the new
    # ones, so that an interrupted install leaves nothing unlisted.
    new = set(path for _, path, _ in entries)
    stale = [(kind, path, target) for path, (kind, target) in found.items() if path not in new]
    stale += [(kind, path, target) for path, listed in (manifest or {}).items()
              for kind, target in listed if kind == "L" and path not in new]
    make_directories(prefix, own=False)
    earlier = [(kind, path, target) for path, (kind, target) in found.items() if kind != "t"]
    earlier += [entry for entry in stale if entry[0] == "L"]
    earlier = [entry for entry in earlier if entry not in entries]
    files.replace(prefix + "/" + MANIFEST, manifest_text(entries + earlier), 0o644)
    lib = None
    for kind, path, target in entries:
        full = prefix + "/" + path
        if kind == "d":
            make_directory(full)
        elif kind == "l":
            place_link(target, full)
        elif kind == "p":
            lib = os.path.dirname(full)
            copy_package(source, full, python)
    interpreter = prefix + "/bin/python3"
    texts = {
        "pyvenv.cfg": "home = %s\ninclude-system-site-packages = false\nversion = %s\n"
                      "executable = %s\n" % (os.path.dirname(python), version,
                                             os.path.realpath(python)),
        "bin/qgrey": launcher.launcher_text(interpreter, "rcpt", lib),
        "bin/qgrey-data": launcher.launcher_text(interpreter, "data", lib),
    }
    for name, module in TOOLS:
        texts["bin/" + name] = TOOL_TEMPLATE.format(python=interpreter, name=name, path=lib,
                                                    module=module)
    man_source = os.path.join(os.path.dirname(source), "man")
    for kind, path, target in entries:
        if kind == "f":
            if path in texts:
                data = texts[path].encode()
            else:
                with open(os.path.join(man_source, os.path.basename(path)), "rb") as f:
                    data = f.read()
            files.replace(prefix + "/" + path, data, 0o755 if path.startswith("bin/") else 0o644)
    for directory in (links_dir, man_links_dir):
        if directory:
            make_directories(directory, own=False)
    for kind, path, target in entries:
        if kind == "L":
            place_link(target, path)

    # What the earlier install wrote and this one does not: deepest first.
    for kind, path, target in sorted(stale, key=lambda item: item[1].count("/"), reverse=True):
        if kind == "L":
            remove_old_link(path, target)
            continue
        full = prefix + "/" + path
        if kind == "d":
            os.rmdir(full)
        else:
            remove(full)
    files.replace(prefix + "/" + MANIFEST, manifest_text(entries), 0o644)
    names = [path[4:] for kind, path, _ in entries if kind == "f" and path.startswith("bin/")]
    return prefix + "/bin", names


def remove_old_link(path, target):
    """A link an earlier install made outside the prefix, and this one did
    not: removed if it is still that link in a directory only root can
    write, else left with a warning."""
    try:
        check_directory("--bin", os.path.dirname(path), os.path.dirname(path))
        if stat.S_ISLNK(os.lstat(path).st_mode) and os.readlink(path) == target:
            os.unlink(path)
            return
    except FileNotFoundError:
        return
    except (OSError, Refused):
        pass
    sys.stderr.write("qgrey.install: warning: %s, written by an earlier install, left alone\n"
                     % path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    options = {"--prefix": "/opt/qgrey", "--bin": "/usr/local/bin", "--python": None}
    while argv:
        if argv[0] not in options or len(argv) < 2:
            sys.stderr.write(USAGE)
            return 100
        options[argv[0]] = argv[1]
        argv = argv[2:]
    source = os.path.dirname(os.path.abspath(__file__))
    try:
        bin_dir, written = install(options, source)
    except Refused as err:
        sys.stderr.write("qgrey.install: refused: %s\n" % err)
        return 100
    except OSError as err:
        sys.stderr.write("qgrey.install: fatal: %s%s\n" % (
            err.strerror or err, ": " + err.filename if getattr(err, "filename", None) else ""))
        return 111
    sys.stdout.write("installed in %s: %s\n" % (bin_dir, " ".join(written)))
    sys.stdout.write("control/smtpplugins: [rcpt] %s/qgrey  (with GL_STAGE=data also: [mail] "
                     ":echo SQGREY_DATA=  [data] %s/qgrey-data)\n" % (bin_dir, bin_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
