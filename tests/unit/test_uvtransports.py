"""The loop's transport table (fastproxy/_uvtransports.pyx) and the
protocols' data_received(): real uvloop loops and loopback sockets."""

import asyncio
import gc

import pytest
import uvloop
from fastproxy._conn import Conn
from fastproxy._protocols import ClientProtocol, UpstreamProtocol
from fastproxy._uvtransports import TransportTable, install


class _Transport:
    """Weak-referenceable, with the one method the table calls."""

    def __init__(self, protocol=None):
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol


class _Recorder(Conn):
    """A Conn that keeps what arrives and the fd it was told."""

    def __init__(self):
        self.got = []
        self.fds = None

    def connection_made(self, transport):
        self.fds = (self.tfd, transport.get_extra_info("socket").fileno())
        self.transport = transport

    def buffer_updated(self, n):
        # end never moves here, so the bytes just read start the free tail
        self.got.append(bytes(memoryview(self)[:n]))

    def connection_lost(self, exc):
        pass


def test_install_swaps_a_uvloop_table_once():
    loop = uvloop.new_event_loop()
    try:
        assert install(loop) is True
        assert install(loop) is False  # its table is no longer uvloop's own
    finally:
        loop.close()


def test_install_leaves_other_loops_alone():
    loop = asyncio.new_event_loop()
    try:
        assert install(loop) is False
    finally:
        loop.close()


def test_table_holds_transports_weakly():
    table = TransportTable()
    t = _Transport()
    table[7] = t
    assert table[7] is t and len(table) == 1
    with pytest.raises(KeyError):
        table[8]
    del t
    gc.collect()
    with pytest.raises(KeyError):  # dead: like a WeakValueDictionary
        table[7]
    assert len(table) == 0


def test_table_tells_our_protocol_its_fd():
    table = TransportTable()
    p = _Recorder()
    assert p.tfd == -1
    table[12] = _Transport(p)
    assert p.tfd == 12
    q = _Recorder()
    table[13] = _Transport(object())  # not ours (TLS: uvloop's SSLProtocol)
    assert q.tfd == -1


@pytest.mark.parametrize("installed", [True, False])
def test_loop_keeps_its_rules_and_protocols_learn_their_fd(installed):
    """uvloop's one use of the table: add_reader() refuses the fd of a live
    transport. Accepted sockets' protocols are told their fd when installed."""
    loop = uvloop.new_event_loop()
    if installed:
        assert install(loop) is True

    async def main():
        made = []
        server = await loop.create_server(
            lambda: made.append(_Recorder()) or made[-1], "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        fd = tr.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="used by transport"):
            loop.add_reader(fd, lambda: None)
        while not made or made[0].fds is None:
            await asyncio.sleep(0.001)
        told, real = made[0].fds
        assert told == (real if installed else -1)
        tr.close()
        made[0].transport.close()
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_data_received_feeds_the_buffer_in_pieces():
    p = _Recorder()
    data = bytes(range(256)) * 160  # 40 KiB: more than one buffer's worth
    p.data_received(data)
    assert b"".join(p.got) == data
    assert len(p.got) > 1
    # uvloop reads data_received off every protocol it is given; without it
    # each new connection raised and dropped an AttributeError
    assert "data_received" in dir(ClientProtocol) and "data_received" in dir(UpstreamProtocol)
