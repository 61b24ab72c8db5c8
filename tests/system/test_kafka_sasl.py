"""Kafka reached only through SASL/SCRAM: `tidings migrate`, `tidings processor all` and
`tidings edge` given nothing but the SASL_PLAINTEXT listener that infra/services.sh opens
(SCRAM-SHA-256, user `tidings`), the password from a file. With the right password stock
python-socketio clients chat through them; with a wrong one each process stops at start
with librdkafka's authentication error, and no record reaches any topic (checked on the
PLAINTEXT listener with stock confluent-kafka)."""

import os
import subprocess
import tempfile
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from conftest import BIN, SECRET, connect, free_port, start, stop, wait_for

SASL_BROKERS = os.environ.get("TIDINGS_KAFKA_SASL_BROKERS", "127.0.0.1:9094")
PLAIN_BROKERS = os.environ.get("TIDINGS_KAFKA_BROKERS", "127.0.0.1:9092")
# The test user infra/services.sh creates at format time.
USER, PASSWORD = "tidings", "tidings-sasl-test"


def sasl_env(password_file):
    return {"TIDINGS_JWT_SECRET": SECRET,
            "TIDINGS_KAFKA_BROKERS": SASL_BROKERS,
            "TIDINGS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "TIDINGS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "TIDINGS_KAFKA_SASL_USERNAME": USER,
            "TIDINGS_KAFKA_SASL_PASSWORD_FILE": password_file,
            "TIDINGS_CASSANDRA": os.environ.get("TIDINGS_CASSANDRA", "127.0.0.1:9042"),
            "TIDINGS_CASSANDRA_KEYSPACE": "tidings_tls"}


def password_file(text):
    fd, path = tempfile.mkstemp(prefix="tidings-sasl-")
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


def clean_env():
    """This process's environment without settings that would reach Kafka another way."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_KAFKA_")}


def end_offsets():
    """The end offset of every partition of every tidings.* topic, read over PLAINTEXT."""
    consumer = Consumer({"bootstrap.servers": PLAIN_BROKERS, "group.id": f"py-{uuid.uuid4()}"})
    try:
        topics = consumer.list_topics(timeout=10).topics
        return {(name, p): consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for name, meta in topics.items() if name.startswith("tidings.")
                for p in meta.partitions}
    finally:
        consumer.close()


def test_processes_on_scram_chat_and_a_wrong_password_stops_them_with_nothing_written():
    env = sasl_env(password_file(PASSWORD))
    base = clean_env()
    subprocess.run([BIN, "migrate"], env=dict(base, **env), check=True, timeout=120)

    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # conftest.start adds os.environ itself: keep this test's Kafka settings on top of it.
    processors = start(["processor", "all"], {**env, "TIDINGS_NODE_ID": f"py-sasl-p-{suffix}"})
    edge = start(["edge"], {**env, "TIDINGS_NODE_ID": f"py-sasl-e-{suffix}",
                            "TIDINGS_LISTEN": f"127.0.0.1:{port}"}, url)
    room = f"sasl-{suffix}"
    ada, bob = connect(url, "ada"), connect(url, "bob")
    try:
        assert ada.call("join", {"room": room}, timeout=30) == {"ok": True, "room": room, "head": 0}
        assert bob.call("join", {"room": room}, timeout=30)["ok"] is True
        ack = ada.call("send", {"room": room, "id": "s1", "text": "over scram"}, timeout=30)
        assert ack["seq"] == 1, ack
        wait_for(lambda: len(bob.received) == 1, timeout=30)
        assert (bob.received[0]["seq"], bob.received[0]["from"], bob.received[0]["text"]) == (1, "ada", "over scram")
    finally:
        ada.disconnect()
        bob.disconnect()
        stop([edge, processors])

    # Wrong password: each process gives up at start, naming the refused login.
    wrong = sasl_env(password_file("not-the-password"))
    before = end_offsets()
    for args in (["migrate", "--only", "kafka"], ["processor", "all"], ["edge"]):
        extra = {"TIDINGS_NODE_ID": f"py-sasl-wrong-{suffix}",
                 "TIDINGS_LISTEN": f"127.0.0.1:{free_port()}",
                 "TIDINGS_OPS_LISTEN": f"127.0.0.1:{free_port()}"}
        started = time.time()
        result = subprocess.run([BIN, *args], env=dict(base, RUST_LOG="warn", **wrong, **extra),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0, f"{args} kept running: {result.stderr[-2000:]}"
        # The error the process exits with (a backtrace may follow it).
        reason = [line for line in result.stderr.splitlines() if "refused our credentials" in line]
        assert reason, f"{args}: {result.stderr[-3000:]}"
        assert "SASL authentication error" in reason[0] and "invalid credentials" in reason[0], reason
        assert time.time() - started < 30
    assert end_offsets() == before, "a process with the wrong password wrote to Kafka"
