"""Shared test settings. Keep this file small and generic: every test module gets what is here."""
from __future__ import annotations

import ipaddress
import os
import socket

import pytest

# The page, API and CLI tests send flat painted discs (tests/helpers.py), which the learned coin finder rightly
# takes for not-coins; they test the plumbing with today's Hough localiser, the finder's own fallback (also in
# the servers they start). tests/test_finder.py tests the learned finder itself, and that the service uses it.
os.environ["COINSPOTTER_FINDER"] = "hough"

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES or host == socket.gethostname():
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # "%": an IPv6 zone id
    except ValueError:
        return host == ""  # "" binds to all local interfaces
    return address.is_loopback or address.is_unspecified  # 0.0.0.0 and :: mean this machine


def _refuse(where: object) -> None:
    raise RuntimeError(
        f"a test tried to reach {where!r}; tests run offline: "
        "use a stand-in server on 127.0.0.1 (see tests/rate_standins.py) instead"
    )


@pytest.fixture(autouse=True)
def _offline_network(monkeypatch):
    """Refuse connections and name look-ups beyond this machine's loopback, so no test reaches the internet."""
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def checked(sock: socket.socket, address) -> None:
        # Only internet sockets carry (host, port) addresses; Unix sockets (paths) stay on this machine.
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _refuse(address)

    def connect(sock, address):
        checked(sock, address)
        return original_connect(sock, address)

    def connect_ex(sock, address):
        checked(sock, address)
        return original_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_local(host):
            _refuse(host)  # a DNS look-up already leaves the machine
        return original_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """requests and urllib honour proxy variables; a proxy would stand between a test and its 127.0.0.1 servers."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """Browser tests that did not run are said in a line of their own at the very end, with what to install, so
    that "23 skipped" never hides them (tests/test_browser.py skips each with the reason)."""
    reasons = {}
    for report in terminalreporter.stats.get("skipped", []):
        if "test_browser.py" in report.nodeid and isinstance(report.longrepr, tuple):
            reason = report.longrepr[2].removeprefix("Skipped: ")
            reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        terminalreporter.write_sep("!", f"{count} browser tests did not run", yellow=True, bold=True)
        terminalreporter.write_line(reason, yellow=True, bold=True)
