"""Webhook dead letters on Kafka: an endpoint that always fails gets each event
TIDINGS_WEBHOOK_MAX_ATTEMPTS times, then the room-log record lands on
`tidings.webhook-dead-letters` with headers naming the endpoint and the last error, read here
with stock confluent-kafka, and the processor goes on to the next event."""

import json
import os
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import Consumer, TopicPartition

from conftest import BIN, SECRET, connect, free_port, start, stop, wait_for

BROKERS = os.environ.get("TIDINGS_KAFKA_BROKERS", "127.0.0.1:9092")
TOPIC = "tidings.webhook-dead-letters"


def failing_receiver():
    attempts = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            attempts.append(json.loads(body))
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"down for maintenance")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, attempts


def dead_letters_for(room, since):
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"py-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(TOPIC, 0, since)])
    found = []
    try:
        for _ in range(20):
            for m in consumer.consume(500, timeout=1):
                if m.error() is None and m.key() == room.encode():
                    found.append(m)
            if len(found) >= 2:
                break
    finally:
        consumer.close()
    return found


def test_an_event_no_attempt_delivered_goes_to_the_dead_letter_topic():
    server, attempts = failing_receiver()
    suffix = uuid.uuid4().hex[:8]
    room = f"pydl-{suffix}.room"
    url = f"http://127.0.0.1:{server.server_address[1]}/in?token=hidden"
    env = {"TIDINGS_JWT_SECRET": SECRET, "TIDINGS_KAFKA_BROKERS": BROKERS,
           "TIDINGS_CASSANDRA": os.environ.get("TIDINGS_CASSANDRA", "127.0.0.1:9042"),
           "TIDINGS_CASSANDRA_KEYSPACE": "tidings_webhooks",
           "TIDINGS_WEBHOOKS": json.dumps([{"name": "down", "url": url, "secret": "k",
                                            "rooms": f"pydl-{suffix}.*"}]),
           "TIDINGS_WEBHOOK_MAX_ATTEMPTS": "2", "TIDINGS_WEBHOOK_BASE_DELAY_MS": "10"}
    subprocess.run([BIN, "migrate"], env=dict(os.environ, **env), check=True, timeout=120)
    probe = Consumer({"bootstrap.servers": BROKERS, "group.id": f"py-{uuid.uuid4()}"})
    since = probe.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)[1]
    probe.close()
    port = free_port()
    edge_url = f"http://127.0.0.1:{port}"
    procs = [start(["processor", "sequencer,persistence,fanout,webhook"],
                   {**env, "TIDINGS_NODE_ID": f"pydl-p-{suffix}"}),
             start(["edge"], {**env, "TIDINGS_NODE_ID": f"pydl-e-{suffix}",
                              "TIDINGS_LISTEN": f"127.0.0.1:{port}"}, edge_url)]
    client = connect(edge_url, "ann")
    try:
        assert client.call("join", {"room": room}, timeout=30)["ok"] is True
        for i in (1, 2):
            assert client.call("send", {"room": room, "id": f"m{i}", "text": f"text {i}"}, timeout=30)["seq"] == i
        wait_for(lambda: len(attempts) >= 4, timeout=90)
        letters = dead_letters_for(room, since)
        assert len(letters) == 2, letters
        assert [a["seq"] for a in attempts] == [1, 1, 2, 2], "two tries each, in order"
        for seq, letter in zip((1, 2), letters):
            headers = {k: v.decode() for k, v in letter.headers()}
            assert headers["webhook.endpoint"] == "down"
            assert headers["webhook.url"] == url.split("?")[0], "the query (credentials) is left out"
            assert headers["webhook.attempts"] == "2"
            assert "503" in headers["webhook.error"] and "maintenance" in headers["webhook.error"]
            assert headers["webhook.delivery-id"] == attempts[2 * (seq - 1)]["delivery_id"]
            # The value is the room-log record unchanged: Confluent framing, Avro RoomEvent.
            assert letter.value()[0] == 0
            assert f"text {seq}".encode() in letter.value()
    finally:
        client.disconnect()
        stop(procs)
        server.shutdown()
