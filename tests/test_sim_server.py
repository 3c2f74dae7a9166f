"""The simulator's server: sockets that answer a reused connection at once."""

from __future__ import annotations

import socket

import httpx

from genguard.sim import Simulator


def _server_side_sockets(sim: Simulator) -> list[socket.socket]:
    server = sim._server
    assert server is not None
    # uvicorn keeps one protocol per open connection; its transport holds the accepted socket.
    return [conn.transport.get_extra_info("socket") for conn in server.server_state.connections]


def test_accepted_connections_have_tcp_nodelay(sim: Simulator) -> None:
    # Without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK hold each answer on a kept-alive
    # connection back about 40 ms; asyncio sets it only on sockets made with IPPROTO_TCP.
    server = sim._server
    assert server is not None
    if not type(server.servers[0]).__module__.startswith("uvloop"):
        # asyncio's own loop (uvloop, installed with genguard[proxy], sets TCP_NODELAY on every TCP socket).
        assert [s.proto for s in server.servers[0].sockets] == [socket.IPPROTO_TCP]
    with httpx.Client() as client:
        for _ in range(2):
            assert client.get(sim.base_url + "/models").status_code == 200
        accepted = _server_side_sockets(sim)
        assert accepted
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in accepted)
