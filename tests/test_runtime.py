"""Runtime helpers: free_port picks a port a server can still bind a moment later."""

import socket

from gkd import runtime


def test_free_port_is_bindable_and_outside_the_ephemeral_range():
    low, high = runtime.ephemeral_port_range()
    assert 1024 <= low < high <= 65535
    ports = {runtime.free_port() for _ in range(20)}
    # above Ray's worker ports (a head given one of those fails to start), below the ephemeral range
    assert all(runtime.FIRST_PORT <= p < low for p in ports) and runtime.FIRST_PORT > 19_999
    assert len(ports) > 1  # random picks, not one fixed port
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("", port))  # nothing holds it


def test_free_port_skips_a_taken_port_and_falls_back_to_the_os(monkeypatch):
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        taken = held.getsockname()[1]
        # every pick lands on the taken port: free_port must not return it, and asks the OS instead
        monkeypatch.setattr(runtime.random.SystemRandom, "randrange", lambda self, a, b: taken)
        port = runtime.free_port(tries=5)
        assert port != taken and port > 0
    # no room below a low ephemeral range: the OS's pick
    monkeypatch.setattr(runtime, "ephemeral_port_range", lambda: (15000, 60999))
    assert runtime.free_port() >= 15000
