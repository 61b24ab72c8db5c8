"""The stock python-socketio client against `tidings standalone`."""

import uuid

import pytest
import socketio

from conftest import connect, make_token, wait_for


def test_two_python_clients_chat_and_resume(server):
    room = f"py-{uuid.uuid4().hex[:8]}"
    ada, bob = connect(server, "ada"), connect(server, "bob")
    assert ada.call("join", {"room": room}, timeout=15) == {"ok": True, "room": room, "head": 0}
    assert bob.call("join", {"room": room}, timeout=15)["ok"] is True

    ack = ada.call("send", {"room": room, "id": "p1", "text": "from python"}, timeout=15)
    assert ack["ok"] is True and ack["seq"] == 1
    wait_for(lambda: len(bob.received) == 1)
    assert bob.received[0]["from"] == "ada"
    assert bob.received[0]["text"] == "from python"
    assert bob.received[0]["seq"] == 1

    bob.disconnect()
    for i in range(2, 6):
        assert ada.call("send", {"room": room, "id": f"p{i}", "text": f"missed {i}"}, timeout=15)["seq"] == i
    back = connect(server, "bob")
    joined = back.call("join", {"room": room, "since": 1}, timeout=15)
    assert joined == {"ok": True, "room": room, "head": 5}
    assert [m["seq"] for m in back.received] == [2, 3, 4, 5]

    again = ada.call("send", {"room": room, "id": "p1", "text": "from python"}, timeout=15)
    assert again["seq"] == 1, "a resend gets the original seq"
    ada.disconnect()
    back.disconnect()


def test_bad_token_is_unauthorized(server):
    client = socketio.Client(reconnection=False)
    reasons = []
    client.on("connect_error", lambda data: reasons.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server, auth={"token": make_token("eve", secret="wrong")}, transports=["websocket"], wait_timeout=10)
    wait_for(lambda: reasons)
    message = reasons[0]["message"] if isinstance(reasons[0], dict) else reasons[0]
    assert message == "unauthorized"


def test_bad_input_gets_codes_and_the_connection_serves_on(server):
    client = connect(server, "carol")
    room = f"py-{uuid.uuid4().hex[:8]}"
    assert client.call("send", {"room": room, "id": "x", "text": "hi"}, timeout=15)["error"]["code"] == "not_joined"
    assert client.call("join", {"room": "bad room"}, timeout=15)["error"]["code"] == "invalid"
    assert client.call("join", {"room": room}, timeout=15)["ok"] is True
    assert client.call("send", {"room": room, "id": "ok", "text": "fine"}, timeout=15)["seq"] == 1
    client.disconnect()


def test_pipelined_sends_take_seqs_in_emit_order(backend):
    """30 sends emitted back to back, no ack awaited in between, three times over: each
    round's seqs must follow the order they were emitted in (G2)."""
    room = f"py-order-{uuid.uuid4().hex[:8]}"
    ada = connect(backend, "ada")
    assert ada.call("join", {"room": room}, timeout=30)["ok"] is True
    for round_ in range(3):
        acks = {}
        for i in range(30):
            ada.emit("send", {"room": room, "id": f"r{round_}-{i}", "text": f"line {i}"},
                     callback=lambda ack, i=i: acks.__setitem__(i, ack))
        wait_for(lambda: len(acks) == 30, timeout=60)
        assert all(a["ok"] for a in acks.values()), acks
        seqs = [acks[i]["seq"] for i in range(30)]
        assert seqs == list(range(seqs[0], seqs[0] + 30)), f"seqs in emit order: {seqs}"
    ada.disconnect()


def test_offline_dms_reach_the_inbox_and_a_resume_from_the_read_marker(backend):
    """A DM to an offline user: on connect, `inbox` counts it unread; `join` with `since`
    = the marker returns exactly the unread ones; `read` clears the count and reaches the
    user's other connection as `read`."""
    suffix = uuid.uuid4().hex[:8]
    a, b = f"ada-{suffix}", f"bob-{suffix}"
    room = f"dm:{a}:{b}"
    ada = connect(backend, a)
    assert ada.call("join", {"room": room}, timeout=30)["ok"] is True
    for i in range(1, 6):
        assert ada.call("send", {"room": room, "id": f"m{i}", "text": f"dm {i}"}, timeout=30)["seq"] == i
    ada.disconnect()

    bob = connect(backend, b)
    other = connect(backend, b)
    other.reads = []
    other.on("read", lambda data: other.reads.append(data))

    def entry():
        rooms = bob.call("inbox", {}, timeout=30)["rooms"]
        return next((r for r in rooms if r["room"] == room), None)

    wait_for(lambda: (entry() or {}).get("unread") == 5, timeout=30)
    assert bob.call("read", {"room": room, "seq": 2}, timeout=30) == {"ok": True}
    marker = entry()
    assert (marker["read"], marker["unread"], marker["last"]["text"]) == (2, 3, "dm 5")
    joined = bob.call("join", {"room": room, "since": marker["read"]}, timeout=30)
    assert joined["ok"] is True, joined
    wait_for(lambda: len(bob.received) == 3)
    assert [m["seq"] for m in bob.received] == [3, 4, 5]
    assert bob.call("read", {"room": room, "seq": 9}, timeout=30)["error"]["code"] == "invalid"
    assert bob.call("read", {"room": room, "seq": 5}, timeout=30) == {"ok": True}
    assert entry()["unread"] == 0
    wait_for(lambda: {"room": room, "seq": 5} in other.reads, timeout=30)
    bob.disconnect()
    other.disconnect()
