"""Starts a real `tidings standalone` for the python-socketio tests."""

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

SECRET = "python-test-secret"
BIN = os.environ.get("TIDINGS_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/tidings"))


def make_token(sub, secret=SECRET, expires_in=3600):
    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': sub, 'exp': int(time.time()) + expires_in})}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    data = tempfile.mkdtemp(prefix="tidings-py-")
    env = dict(os.environ, TIDINGS_LISTEN=f"127.0.0.1:{port}", TIDINGS_DATA_DIR=data,
               TIDINGS_JWT_SECRET=SECRET, RUST_LOG="warn")
    proc = subprocess.Popen([BIN, "standalone"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/readyz", timeout=1).status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None, "tidings exited"
        assert time.time() < deadline, "tidings did not become ready"
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
