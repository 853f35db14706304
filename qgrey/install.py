"""Install qgrey in a virtual environment of its own, with the system's
Python and nothing else: no pip, no network, no --break-system-packages.

    cd qgrey-X.Y && python3 -m qgrey.install [--prefix /opt/qgrey] [--bin /usr/local/bin]

Debian 12 and Ubuntu 24.04 refuse `pip install` into the system Python
(PEP 668), and their python3 has no ensurepip unless python3-venv is
installed; qgrey needs neither, being standard library only. This makes
PREFIX a virtual environment (without pip), copies this qgrey package into
its site-packages, and writes PREFIX/bin:
  qgrey        the [rcpt] entry for control/smtpplugins (the fast launcher)
  qgrey-data   the [data] entry (GL_STAGE=data)
  qgrey-admin, qgrey-expire, qgrey-report
each starting PREFIX's Python with -I -S, and links the commands into BIN.
The man pages go to PREFIX/share/man/man8, linked from BIN/../share/man/man8. Running it again upgrades in
place (the package is replaced as a whole, the launchers rewritten).

Exit status: 0 done; 100 usage; 111 cannot write.
"""
import os
import shutil
import sys
import sysconfig

TOOLS = (("qgrey-admin", "qgrey.admin"), ("qgrey-expire", "qgrey.expire"),
         ("qgrey-report", "qgrey.report"))
TOOL_TEMPLATE = '''#!{python} -IS
# {name}, written by: python3 -m qgrey.install
import sys
sys.path.insert(0, {path!r})
from {module} import main
main()
'''
USAGE = "usage: python3 -m qgrey.install [--prefix DIR] [--bin DIR]\n"


def site_packages(prefix):
    return sysconfig.get_path("purelib", vars={"base": prefix, "platbase": prefix})


def write(path, text, mode):
    temporary = path + ".new"
    with open(temporary, "w") as out:
        out.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def install(prefix, bindir, source):
    import venv
    prefix = os.path.abspath(prefix)
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=False).create(prefix)
    python = os.path.join(prefix, "bin", "python3")
    lib = site_packages(prefix)
    os.makedirs(lib, exist_ok=True)
    # The package is replaced whole: a file removed upstream must not linger.
    target = os.path.join(lib, "qgrey")
    staging = target + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    old = target + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(target):
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    # Readable by the user qmail-smtpd runs as, whatever the checkout's modes.
    for directory, _, files in os.walk(target):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)

    from qgrey import launcher
    bin_dir = os.path.join(prefix, "bin")
    written = []
    for name, stage in (("qgrey", "rcpt"), ("qgrey-data", "data")):
        text = launcher.launcher_text(python, stage, lib)
        write(os.path.join(bin_dir, name), text, 0o755)
        written.append(name)
    for name, module in TOOLS:
        write(os.path.join(bin_dir, name),
              TOOL_TEMPLATE.format(python=python, name=name, path=lib, module=module), 0o755)
        written.append(name)
    man_source = os.path.join(os.path.dirname(source), "man")  # beside qgrey/ in a checkout
    man_dir = os.path.join(prefix, "share", "man", "man8")
    if os.path.isdir(man_source):
        os.makedirs(man_dir, exist_ok=True)
        for page in sorted(os.listdir(man_source)):
            if page.endswith(".8"):
                shutil.copyfile(os.path.join(man_source, page), os.path.join(man_dir, page))
    if bindir:
        links = [(os.path.join(bin_dir, name), os.path.join(bindir, name)) for name in written]
        if os.path.isdir(man_source):
            shared_man = os.path.join(os.path.dirname(os.path.abspath(bindir)), "share", "man", "man8")
            links += [(os.path.join(man_dir, page), os.path.join(shared_man, page))
                      for page in sorted(os.listdir(man_dir))]
        for source_path, link in links:
            link_to(source_path, link)
    return bin_dir, written


def link_to(source_path, link):
    """link -> source_path, replacing an older link but never a file."""
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link) and not os.path.islink(link):
        sys.stderr.write("qgrey.install: warning: %s exists and is not a link; left alone\n" % link)
        return
    temporary = link + ".new"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(source_path, temporary)
    os.replace(temporary, link)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    options = {"--prefix": "/opt/qgrey", "--bin": "/usr/local/bin"}
    while argv:
        if argv[0] not in options or len(argv) < 2:
            sys.stderr.write(USAGE)
            return 100
        options[argv[0]] = argv[1]
        argv = argv[2:]
    source = os.path.dirname(os.path.abspath(__file__))
    try:
        bin_dir, written = install(options["--prefix"], options["--bin"], source)
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
