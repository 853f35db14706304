"""What the tests' real servers (dnsserver's nsd, redisserver's redis-server)
share: a test that needs a server program skips where it is missing, but
fails where CI=true, since .ci/run installs every one of them. Imports
pytest only when it must skip or fail: bench/ uses these modules without it."""
import os


def require(program, package):
    """program: the server's path, or None when it is not installed."""
    if program is None:
        import pytest
        if os.environ.get("CI") == "true":
            pytest.fail("%s is missing, and CI=true: .ci/run must install it" % package)
        pytest.skip("%s is not installed (Debian: apt-get install %s)" % (package, package))
