"""The boundary of the command-line tools (qgrey-expire, qgrey-admin,
qgrey-report): every error becomes one line on stderr and an exit status.

Exit status: 0 done; 100 usage, bad input or a damaged database;
111 temporary failure (lock, I/O, interrupted). Tools may add their own
(qgrey-admin: 1 when there is no such entry or check found a problem).
"""
import os
import sys

from qgrey.store import StoreError


class Failure(Exception):
    """One line for stderr, and the exit status."""

    def __init__(self, text, status=100):
        Exception.__init__(self, text)
        self.status = status


def main(program, run):
    """sys.exit(run(argv, environ, stdout)), errors said in one line."""
    os.umask(0o077)
    try:
        status = run(sys.argv[1:], os.environb, sys.stdout)
        sys.stdout.flush()
    except Failure as err:
        sys.stderr.write("%s: fatal: %s\n" % (program, err))
        status = err.status
    except StoreError as err:
        sys.stderr.write("%s: fatal: %s\n" % (program, err.detail))
        status = 100 if err.reason == "database" else 111
    except BrokenPipeError:  # a reader such as head went away: not an error
        status = 0
        sys.stdout = None
    except KeyboardInterrupt:
        sys.stderr.write("%s: fatal: interrupted\n" % program)
        status = 111
    except OSError as err:
        sys.stderr.write("%s: fatal: %s%s\n" % (
            program, err.strerror or err, ": " + err.filename if err.filename else ""))
        status = 111
    except UnicodeError as err:
        sys.stderr.write("%s: fatal: not ASCII text: %s\n" % (program, err))
        status = 100
    sys.exit(status)
