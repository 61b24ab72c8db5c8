"""`tidings schemas push` against a registry that is not Tidings' own: Apicurio Registry
2.4.2.Final with its Confluent-compatible API, as infra/registry.sh runs it (each test gets
a fresh, empty one). What counts is what the registry itself then serves: under every id in
`tidings schemas list`, the schema Tidings writes with that id, read back through the
registry's API and through a stock confluent_kafka SchemaRegistryClient."""

import hashlib
import io
import json
import os
import subprocess
import time
import urllib.request
import zipfile

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from conftest import BIN

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
REGISTRY_SH = os.path.join(REPO, "infra", "registry.sh")
SCHEMAS = os.path.join(REPO, "schemas", "avro")


def listing():
    """(subject, version, id, schema file) for every line of `tidings schemas list`."""
    out = subprocess.run([BIN, "schemas", "list"], capture_output=True, text=True, check=True,
                         env=dict(os.environ, RUST_LOG="error")).stdout
    rows = []
    for line in out.splitlines():
        subject, version, schema_id, file = line.split("\t")
        rows.append((subject, int(version.removeprefix("version ")), int(schema_id.removeprefix("id ")), file))
    assert rows, "tidings schemas list printed nothing"
    return rows


def schema_file(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        return json.load(f)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post(url, body, content_type="application/json", headers=None):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


@pytest.fixture
def registry():
    """A fresh, empty registry; its Confluent API's base URL."""
    subprocess.run([REGISTRY_SH, "start"], check=True, timeout=1800)
    url = subprocess.run([REGISTRY_SH, "url"], capture_output=True, text=True, check=True).stdout.strip()
    yield url
    subprocess.run([REGISTRY_SH, "stop"], check=True, timeout=120)


def assert_serves_tidings_schemas(url):
    rows = listing()
    for subject, version, schema_id, file in rows:
        expected = schema_file(file)
        by_id = get(f"{url}/schemas/ids/{schema_id}")
        assert json.loads(by_id["schema"]) == expected, f"id {schema_id} ({file})"
        registered = get(f"{url}/subjects/{subject}/versions/{version}")
        assert registered["id"] == schema_id, f"{subject} version {version}: {registered}"
        assert json.loads(registered["schema"]) == expected, f"{subject} version {version}"
    assert {subject for subject, *_ in rows} <= set(get(f"{url}/subjects"))

    # What a stock consumer does with the id in a record's header.
    client = SchemaRegistryClient({"url": url})
    schema = client.get_schema(201)
    assert schema.schema_type == "AVRO"
    room_event = next(file for _, _, schema_id, file in rows if schema_id == 201)
    assert json.loads(schema.schema_str) == schema_file(room_event)


@pytest.mark.xfail(strict=True, reason=(
    "push needs the registry's IMPORT mode (PUT /mode/{subject}) to keep Tidings' ids; "
    "Apicurio has none (404) and gives its own ids from 1, so push stops at the first schema. "
    "Apicurio keeps given ids through its admin import instead: see the next test"))
def test_push_registers_every_schema_under_tidings_ids(registry):
    pushed = subprocess.run([BIN, "schemas", "push", "--registry", registry], capture_output=True,
                            text=True, timeout=120,
                            env=dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0"))
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert_serves_tidings_schemas(registry)


def apicurio_export(rows):
    """Tidings' schemas as an Apicurio export archive (format 1.0): one content entry per id,
    with contentId = Tidings' id (what Apicurio's Confluent API calls a schema id), and one
    artifact version per subject and version."""
    now = int(time.time() * 1000)
    latest = {}
    for subject, version, *_ in rows:
        latest[subject] = max(version, latest.get(subject, 0))
    archive = io.BytesIO()
    contents = set()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("manifest.Manifest.json", json.dumps({
            "systemName": "tidings", "exportVersion": "1.0", "exportedOn": now, "exportedBy": ""}))
        for global_id, (subject, version, schema_id, file) in enumerate(rows, start=1):
            data = json.dumps(schema_file(file), separators=(",", ":")).encode()
            digest = hashlib.sha256(data).hexdigest()
            if schema_id not in contents:
                contents.add(schema_id)
                z.writestr(f"content/{digest}.Content.json", json.dumps({
                    "contentId": schema_id, "contentHash": digest, "canonicalHash": digest,
                    "artifactType": "AVRO", "serializedReferences": None}))
                z.writestr(f"content/{digest}.Content.data", data)
            z.writestr(f"groups/default/artifacts/{subject}/versions/{version}.ArtifactVersion.json", json.dumps({
                "globalId": global_id, "groupId": None, "artifactId": subject, "version": str(version),
                "versionId": version, "artifactType": "AVRO", "state": "ENABLED", "name": None,
                "description": None, "createdBy": "", "createdOn": now, "labels": None, "properties": None,
                "isLatest": version == latest[subject], "contentId": schema_id}))
    return archive.getvalue()


def test_apicurio_admin_import_keeps_tidings_ids(registry):
    """The way into Apicurio that keeps ids: its own import API with an export archive."""
    base = registry.split("/apis/")[0]
    rows = listing()
    headers = {"X-Registry-Preserve-GlobalId": "true", "X-Registry-Preserve-ContentId": "true"}
    status, _ = post(f"{base}/apis/registry/v2/admin/import", apicurio_export(rows), "application/zip", headers)
    assert status == 204
    assert_serves_tidings_schemas(registry)

    # A producer's serializer registering a schema that is already there gets Tidings' id,
    # and a schema new to the registry gets an id above all of Tidings'.
    subject, _, schema_id, file = rows[0]
    body = json.dumps({"schema": json.dumps(schema_file(file), separators=(",", ":"))}).encode()
    assert json.loads(post(f"{registry}/subjects/{subject}/versions", body)[1])["id"] == schema_id
    other = json.dumps({"schema": json.dumps({"type": "record", "name": "Other", "fields": []})}).encode()
    assert json.loads(post(f"{registry}/subjects/other-value/versions", other)[1])["id"] > max(r[2] for r in rows)

    # Importing again (push run twice) changes nothing.
    status, _ = post(f"{base}/apis/registry/v2/admin/import", apicurio_export(rows), "application/zip", headers)
    assert status == 204
    assert_serves_tidings_schemas(registry)
