"""Analytics teams' view: every topic, read from real Kafka with stock confluent-kafka and its
AvroDeserializer against `tidings registry`, and CONSUMING.md's consumer run verbatim."""

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import connect, wait_for

BROKERS = os.environ.get("TIDINGS_KAFKA_BROKERS", "127.0.0.1:9092")
GUIDE = os.path.join(os.path.dirname(__file__), "../../CONSUMING.md")

# What the traffic below must leave on each topic, at least.
EXPECTED_KINDS = {
    "tidings.client-events": {"send", "join", "head", "read", "delete", "mute"},
    "tidings.room-log": {"message", "host", "read", "delete", "mute"},
    "tidings.audit": {"delete", "mute"},
    "tidings.typing": {"typing"},
    "tidings.presence": {"online", "join", "leave", "offline", "presence", "status"},
    "tidings.deliveries": {"ack", "reject", "joined", "message", "typing", "head", "presence",
                           "presence-answer", "status-answer", "read", "receipt", "notify", "deleted"},
    "tidings.subscriptions": {"host", "user-host", "user-unhost"},
}


def ends(consumer, topic):
    """Every partition of `topic` with its current end offset."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in partitions]


def traffic(url, suffix):
    """One of everything a chat does, on the distributed deployment."""
    a, b = f"ada-{suffix}", f"bob-{suffix}"
    room, dm = f"analytics-{suffix}", f"dm:{a}:{b}"
    ada, bob, bob2 = connect(url, a), connect(url, b), connect(url, b)
    for client in (ada, bob):
        assert client.call("join", {"room": room}, timeout=30)["ok"] is True
    typing = []
    bob.on("typing", typing.append)
    presence = []
    bob.on("presence", presence.append)
    reads = []
    bob2.on("read", reads.append)
    receipts = []
    ada.on("receipt", receipts.append)
    notices = []
    bob.on("notify", notices.append)
    ada.emit("typing", {"room": room, "on": True})
    assert ada.call("send", {"room": room, "id": "m1", "text": "hello analytics"}, timeout=30)["seq"] == 1
    assert ada.call("send", {"room": room, "id": "m2", "text": "a forbidden-word"}, timeout=30)["error"]["code"] == "rejected"
    assert ada.call("history", {"room": room}, timeout=30)["ok"] is True
    assert ada.call("presence", {"room": room}, timeout=30)["ok"] is True
    assert ada.call("status", {"users": [b]}, timeout=30)["ok"] is True
    assert bob.call("read", {"room": room, "seq": 1}, timeout=30) == {"ok": True}
    assert ada.call("join", {"room": dm}, timeout=30)["ok"] is True
    assert ada.call("send", {"room": dm, "id": "d1", "text": "psst"}, timeout=30)["seq"] == 1
    wait_for(lambda: typing and reads and receipts and notices, timeout=30)
    mod = connect(url, f"mia-{suffix}", claims={"role": "moderator"})
    assert mod.call("join", {"room": room}, timeout=30)["ok"] is True
    assert ada.call("send", {"room": room, "id": "m3", "text": "regrettable"}, timeout=30)["seq"] == 2
    assert mod.call("delete", {"room": room, "seq": 2}, timeout=30) == {"ok": True}
    assert mod.call("mute", {"room": room, "user": b, "until": int(time.time() * 1000) + 60000}, timeout=30) == {"ok": True}
    mod.disconnect()
    charlie = connect(url, f"charlie-{suffix}")
    assert charlie.call("join", {"room": room}, timeout=30)["ok"] is True
    wait_for(lambda: presence, timeout=30)
    assert charlie.call("leave", {"room": room}, timeout=30)["ok"] is True
    for client in (charlie, bob2, bob, ada):
        client.disconnect()
    return room


def test_a_stock_avro_deserializer_decodes_every_record_of_every_topic(distributed, registry):
    subjects = json.load(urllib.request.urlopen(f"{registry}/subjects", timeout=10))
    # Webhook dead letters appear only when an endpoint gives up (test_webhook_dead_letters.py),
    # revocations only when an admin revokes (contract_v3.mjs).
    with_schemas = [*EXPECTED_KINDS, "tidings.webhook-dead-letters", "tidings.revocations"]
    assert sorted(subjects) == sorted(f"{t}-value" for t in with_schemas)

    reader = Consumer({"bootstrap.servers": BROKERS, "group.id": f"analytics-{uuid.uuid4().hex}",
                       "isolation.level": "read_committed", "enable.auto.commit": False})
    starts = {topic: ends(reader, topic) for topic in EXPECTED_KINDS}
    room = traffic(distributed["url"], uuid.uuid4().hex[:8])

    decode = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    seen = {topic: set() for topic in EXPECTED_KINDS}
    messages = []

    def read_to_end(topic):
        """Everything appended since the start, up to the ends as they are now."""
        stop = {tp.partition: tp.offset for tp in ends(reader, topic)}
        todo = {tp.partition for tp in starts[topic] if tp.offset < stop[tp.partition]}
        reader.assign([tp for tp in starts[topic] if tp.partition in todo])
        idle = 0
        while todo and idle < 30:
            record = reader.poll(1.0)
            if record is None:
                idle += 1
                continue
            assert not record.error(), record.error()
            idle = 0
            if record.offset() + 1 >= stop[record.partition()]:
                todo.discard(record.partition())
            if record.offset() >= stop[record.partition()]:
                continue
            event = decode(record.value(), SerializationContext(topic, MessageField.VALUE))
            assert event["event_id"] and event["kind"], event
            seen[topic].add(event["kind"])
            if topic == "tidings.room-log" and event["room"] == room and event["kind"] == "message":
                messages.append(event)
        reader.unassign()

    def complete():
        for topic in EXPECTED_KINDS:
            if not EXPECTED_KINDS[topic] <= seen[topic]:
                read_to_end(topic)
                starts[topic] = ends(reader, topic)
        return all(EXPECTED_KINDS[t] <= seen[t] for t in EXPECTED_KINDS)

    wait_for(complete, timeout=60)
    reader.close()
    assert [(m["seq"], m["text"], m["client_id"]) for m in messages] == [
        (1, "hello analytics", "m1"), (2, "regrettable", "m3")]


def guide_consumer():
    """The Python block of CONSUMING.md, as it stands there."""
    with open(GUIDE, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 1, "CONSUMING.md has one Python consumer"
    return blocks[0]


def test_the_consumer_guide_works_verbatim(distributed, registry):
    suffix = uuid.uuid4().hex[:8]
    url = distributed["url"]
    ada = connect(url, f"ada-{suffix}")
    room = f"guide-{suffix}"
    assert ada.call("join", {"room": room}, timeout=30)["ok"] is True
    for i in range(1, 4):
        assert ada.call("send", {"room": room, "id": f"g{i}", "text": f"guide {i}"}, timeout=30)["seq"] == i
    ada.disconnect()

    env = dict(os.environ, TIDINGS_KAFKA_BROKERS=BROKERS, TIDINGS_REGISTRY_URL=registry,
               GROUP=f"guide-{suffix}")
    run = subprocess.run([sys.executable, "-c", guide_consumer()], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert all(line["kind"] == "message" for line in lines), "control records are filtered out"
    ours = [(line["seq"], line["text"], line["key"]) for line in lines if line["room"] == room]
    assert ours == [(i, f"guide {i}", room) for i in range(1, 4)]
