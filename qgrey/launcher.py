"""Write the fast launcher that control/smtpplugins should name.

    python3 -m qgrey.launcher /var/qmail/bin/qgrey              [rcpt] entry
    python3 -m qgrey.launcher --data /var/qmail/bin/qgrey-data  [data] entry (GL_STAGE=data)

GL_STAGE=data also needs a [mail] entry, which is no file: the line
    :echo SQGREY_DATA=
listed last under [mail] (qmail-spp runs it with /bin/sh -c; no Python).
It empties QGREY_DATA at every MAIL qmail-smtpd accepts, so that nothing the
RCPTs of one transaction recorded is taken for the next one's.

qmail-spp starts the plugin for every RCPT. The launcher runs this very
interpreter with -I -S: no site processing (which can cost several times a
bare start-up) and no environment variables that change Python's behaviour,
and it finds qgrey where it is installed now. Write it again after moving
qgrey or upgrading Python.
"""
import os
import sys

from qgrey import files

# What both launchers run: qgrey.plugin.main for their stage, or one line
# and exit 0 when qgrey cannot be imported.
CODE = '''import sys
sys.path.insert(0, {path!r})
try:
    from qgrey.plugin import main
except BaseException as err:  # moved, or no memory left: one line, exit 0
    import posix
    try:
        fix = "write the launcher again"
        if isinstance(err, MemoryError) or getattr(err, "errno", None) == 12 or "failed to map" in str(err):
            fix = "raise softlimit -m in the run script of qmail-smtpd"
        posix.write(2, ("qgrey: action=error reason=internal detail=cannot import qgrey from "
                        "%s (%r); %s\\n" % ({path!r}, err, fix)).encode("ascii", "replace"))
    finally:
        posix._exit(0)
main({stage})
'''

# The [rcpt] entry: Python itself.
TEMPLATE = '''#!{python} -IS
# qgrey launcher for qmail-spp, written by: python3 -m qgrey.launcher
''' + CODE


# The [mail] entry (GL_STAGE=data): a line of control/smtpplugins, not a file.
MAIL_ENTRY = ":echo SQGREY_DATA="

# The [data] entry (GL_STAGE=data): a shell script that starts Python only
# when a RCPT of this transaction recorded something (QGREY_DATA is unset
# before the first MAIL, and empty from each MAIL until a RCPT records), so
# messages of relay clients and whitelisted clients cost no Python start at DATA.
DATA_TEMPLATE = '''#!/bin/sh
# qgrey [data] launcher for qmail-spp, written by: python3 -m qgrey.launcher --data
[ -n "${{QGREY_DATA-}}" ] || exit 0
exec {python} -IS -c {code}
'''


def launcher_text(python=None, stage="rcpt", package_parent=None):
    """The launcher of this interpreter (or python) for qgrey where it is
    installed now (or in package_parent)."""
    if package_parent is None:
        import qgrey
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(qgrey.__file__)))
    python = python or sys.executable
    if stage == "data":
        import shlex
        code = CODE.format(path=package_parent, stage='"data"')
        return DATA_TEMPLATE.format(python=shlex.quote(python), code=shlex.quote(code))
    return TEMPLATE.format(python=python, path=package_parent, stage="")


USAGE = "usage: python3 -m qgrey.launcher [--data] PATH\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    stage = "rcpt"
    if argv[:1] == ["--data"]:
        stage, argv = "data", argv[1:]
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 100
    target = argv[0]
    try:
        # A new file under a random name, renamed over target: a link
        # planted at target (or beside it) is replaced, never written through.
        files.replace(target, launcher_text(stage=stage).encode(), 0o755)
    except OSError as err:
        sys.stderr.write("qgrey.launcher: fatal: cannot write %s: %s\n" % (target, err.strerror))
        return 111
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
