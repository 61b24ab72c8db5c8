"""Starts a real `tidings standalone` for the python-socketio tests."""

import base64
import threading
import hashlib
import hmac
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest
import socketio

SECRET = "python-test-secret"
BIN = os.environ.get("TIDINGS_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/tidings"))


def make_token(sub, secret=SECRET, expires_in=3600, claims=None):
    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    payload = {"sub": sub, "exp": int(time.time()) + expires_in, **(claims or {})}
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def connect(url, sub, claims=None):
    client = socketio.Client(reconnection=False)
    client.received = []
    ready = threading.Event()

    @client.on("message")
    def on_message(data):
        client.received.append(data)
        ready.set()

    client.connect(url, auth={"token": make_token(sub, claims=claims)}, transports=["websocket"], wait_timeout=10)
    return client


def wait_for(predicate, timeout=15):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env, url=None):
    """Starts `tidings args...`; with `url`, waits until its /readyz answers 200."""
    # Rates high enough for a test that pipelines sends; the limits have tests of their own.
    rates = {f"TIDINGS_{k}": "5000" for k in ("RATE_PER_SEC", "RATE_BURST", "USER_RATE_PER_SEC", "USER_RATE_BURST")}
    proc = subprocess.Popen([BIN, *args], env=dict(os.environ, RUST_LOG="warn", **rates, **env))
    deadline = time.time() + 60
    while url:
        try:
            if urllib.request.urlopen(f"{url}/readyz", timeout=1).status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None, "tidings exited"
        assert time.time() < deadline, "tidings did not become ready"
        time.sleep(0.1)
    return proc


def stop(procs):
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(["standalone"], {"TIDINGS_LISTEN": f"127.0.0.1:{port}",
                                  "TIDINGS_DATA_DIR": tempfile.mkdtemp(prefix="tidings-py-"),
                                  "TIDINGS_JWT_SECRET": SECRET}, url)
    yield url
    stop([proc])


@pytest.fixture(scope="module")
def distributed():
    """An edge with processors apart on the Kafka and Cassandra that infra/services.sh
    started: its URL and the environment its processes share."""
    env = {"TIDINGS_JWT_SECRET": SECRET,
           "TIDINGS_KAFKA_BROKERS": os.environ.get("TIDINGS_KAFKA_BROKERS", "127.0.0.1:9092"),
           "TIDINGS_CASSANDRA": os.environ.get("TIDINGS_CASSANDRA", "127.0.0.1:9042"),
           "TIDINGS_CASSANDRA_KEYSPACE": "tidings_python",
           "TIDINGS_BLOCKED_TERMS": "forbidden-word"}
    subprocess.run([BIN, "migrate"], env=dict(os.environ, **env), check=True, timeout=120)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    suffix = uuid.uuid4().hex[:8]
    processors = start(["processor", "all"], {**env, "TIDINGS_NODE_ID": f"py-processors-{suffix}",
                                             "TIDINGS_LISTEN": f"127.0.0.1:{free_port()}"})
    edge = start(["edge"], {**env, "TIDINGS_NODE_ID": f"py-edge-{suffix}",
                            "TIDINGS_LISTEN": f"127.0.0.1:{port}"}, url)
    yield {"url": url, "env": env}
    stop([edge, processors])


@pytest.fixture(scope="module", params=["standalone", "kafka-cassandra"])
def backend(request):
    """A Tidings URL on each backend: standalone, or the distributed deployment."""
    if request.param == "standalone":
        yield request.getfixturevalue("server")
    else:
        yield request.getfixturevalue("distributed")["url"]


@pytest.fixture(scope="module")
def registry():
    """`tidings registry`: the Schema Registry API for Tidings' schemas."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(["registry"], {"TIDINGS_LISTEN": f"127.0.0.1:{port}"}, url)
    yield url
    stop([proc])
