"""Coverage's start-up hook for the coverage run (.ci/coverage) only.

.ci/coverage copies this file into the site-packages of its own virtual
environment as qgrey_coverage_hook.py, with the coverage settings beside it
(qgrey_coverage.rc), and a .pth file that calls start(): every Python that
reads site-packages (pytest, the console scripts pip wrote) measures itself.
The launchers run Python with -I -S, which reads no .pth file: with
QGREY_COVERAGE set, the tests' launcher fixture calls wrap_launcher() on the
launcher it wrote, which adds the same start() before qgrey is imported.
Nothing here is installed with qgrey, and nothing of qgrey changes.

The plugin ends with posix._exit(), which runs no atexit handler: start()
wraps posix._exit so that the data is saved first.
"""
import os
import posix

HERE = os.path.dirname(os.path.abspath(__file__))
RCFILE = os.path.join(HERE, "qgrey_coverage.rc")
_started = []


def start():
    if _started or not os.path.exists(RCFILE):
        return
    import coverage
    # auto_data: saved at exit (atexit) as well, for the tools and pytest.
    cov = coverage.Coverage(config_file=RCFILE, data_suffix=True, auto_data=True)
    cov.start()
    _started.append(cov)
    real_exit = posix._exit

    def _exit(status):
        try:
            cov.stop()
            cov.save()
        except BaseException:  # measuring must never change what is measured
            pass
        real_exit(status)
    posix._exit = _exit
    os._exit = _exit


def wrap_launcher(path):
    """Make the launcher at path ([rcpt] or [data]) start coverage before it
    imports qgrey. The [data] launcher's Python code is a single-quoted
    shell word: the lines added hold no single quote."""
    with open(path) as f:
        text = f.read()
    marker = "import sys\n"
    assert marker in text, "no 'import sys' line in the launcher %s" % path
    assert not any(c in HERE for c in "'\"\\$`\n"), HERE
    text = text.replace(marker, marker + 'sys.path.insert(0, "%s")\nimport qgrey_coverage_hook\n'
                        "qgrey_coverage_hook.start()\n" % HERE, 1)
    with open(path, "w") as f:
        f.write(text)
