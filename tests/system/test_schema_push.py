"""`tidings schemas push` against real registries other than the one it pushes from: Apicurio
Registry 2.4.2.Final as infra/registry.sh runs it (each test gets a fresh, empty one, stopped
afterwards even on failure), and a `tidings registry` process for the Confluent path. What
counts is what the registry itself then serves: under every id in `tidings schemas list`, the
schema Tidings writes with that id, read back through Apicurio's own API, its Confluent API
and a stock confluent_kafka SchemaRegistryClient. Needs no Kafka."""

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

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


def versions_by_subject(rows):
    versions = {}
    for subject, version, *_ in rows:
        versions.setdefault(subject, []).append(version)
    return versions


def schema_file(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        return json.load(f)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def get_status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def push(url):
    return subprocess.run([BIN, "schemas", "push", "--registry", url], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0",
                                                RUST_LIB_BACKTRACE="0"))


def pushed_lines(rows):
    return [f"{subject}\tversion {version}\tid {schema_id}" for subject, version, schema_id, _ in rows]


@pytest.fixture
def apicurio():
    """A fresh, empty Apicurio; its Confluent API's base URL. The first start assembles it
    with Maven (about 1.5 min with nothing in ~/.m2, 25 s with it; 6 s once assembled)."""
    url = subprocess.run([REGISTRY_SH, "url"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run([REGISTRY_SH, "start"], check=True, timeout=1800)
        yield url
    finally:
        # Also after a failed or timed-out start: the JVM runs in its own session.
        subprocess.run([REGISTRY_SH, "stop"], check=True, timeout=120)


def apicurio_api(url):
    return url.split("/apis/")[0] + "/apis/registry/v2"


def assert_serves_tidings_schemas(url):
    rows = listing()
    api = apicurio_api(url)
    versions = versions_by_subject(rows)
    for subject, version, schema_id, file in rows:
        expected = schema_file(file)
        # Apicurio's own API: the content under the id, and the version pointing at it.
        assert json.loads(urllib.request.urlopen(f"{api}/ids/contentIds/{schema_id}", timeout=10).read()) == expected, \
            f"content {schema_id} ({file})"
        meta = get(f"{api}/groups/default/artifacts/{subject}/versions/{version}/meta")
        assert meta["contentId"] == schema_id, f"{subject} version {version}: {meta}"
        # Its Confluent API.
        by_id = get(f"{url}/schemas/ids/{schema_id}")
        assert json.loads(by_id["schema"]) == expected, f"id {schema_id} ({file})"
        registered = get(f"{url}/subjects/{subject}/versions/{version}")
        assert registered["id"] == schema_id, f"{subject} version {version}: {registered}"
        assert json.loads(registered["schema"]) == expected, f"{subject} version {version}"
    for subject, numbers in versions.items():
        assert get(f"{url}/subjects/{subject}/versions") == numbers, subject
        listed = get(f"{api}/groups/default/artifacts/{subject}/versions")["versions"]
        assert [v["version"] for v in listed] == [str(n) for n in numbers], subject

    # What a stock consumer does with the id in a record's header, and a stock client's
    # view of the subjects.
    client = SchemaRegistryClient({"url": url})
    for subject, version, schema_id, file in rows:
        schema = client.get_schema(schema_id)
        assert schema.schema_type == "AVRO"
        assert json.loads(schema.schema_str) == schema_file(file), f"id {schema_id}"
        assert client.get_version(subject, version).schema_id == schema_id, f"{subject} version {version}"
    for subject, numbers in versions.items():
        assert client.get_versions(subject) == numbers, subject
        assert client.get_latest_version(subject).version == max(numbers), subject


def test_push_registers_every_schema_under_tidings_ids_in_apicurio(apicurio):
    rows = listing()
    pushed = push(apicurio)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert pushed.stdout.splitlines() == pushed_lines(rows)
    assert set(get(f"{apicurio}/subjects")) == set(versions_by_subject(rows))
    assert_serves_tidings_schemas(apicurio)

    # Pushing again finds everything in place and changes nothing.
    again = push(apicurio)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines() == pushed_lines(rows)
    assert_serves_tidings_schemas(apicurio)

    # A producer's serializer registering a schema that is already there (normalized, as
    # Apicurio then compares canonical forms) gets Tidings' id; a schema new to the registry
    # gets an id above all of Tidings', so it can never shadow one.
    client = SchemaRegistryClient({"url": apicurio})
    subject, _, schema_id, file = rows[0]
    with open(os.path.join(SCHEMAS, file)) as f:
        as_in_the_file = f.read()
    assert client.register_schema(subject, Schema(as_in_the_file, "AVRO"), normalize_schemas=True) == schema_id
    other = Schema(json.dumps({"type": "record", "name": "Other", "fields": []}), "AVRO")
    assert client.register_schema("other-value", other) > max(r[2] for r in rows)
    assert_serves_tidings_schemas(apicurio)


def test_push_refuses_ids_that_hold_other_schemas_in_apicurio(apicurio):
    rows = listing()
    lowest = min(schema_id for _, _, schema_id, _ in rows)
    first_subject = next(subject for subject, _, schema_id, _ in rows if schema_id == lowest)
    # Ordinary use of the registry before push: its own ids run from 1 up to Tidings' lowest.
    client = SchemaRegistryClient({"url": apicurio})
    given = 0
    while given < lowest:
        junk = Schema(json.dumps({"type": "record", "name": f"Junk{given}", "fields": []}), "AVRO")
        given = client.register_schema("junk-value", junk)
    assert given == lowest, "the registry's own ids skipped Tidings' lowest"

    pushed = push(apicurio)
    assert pushed.returncode != 0
    error = pushed.stderr.strip().splitlines()[-1]
    assert f"id {lowest} is already held by a different schema" in error, pushed.stderr[-3000:]
    assert first_subject in error, error
    # Nothing was imported, and the registry's own schema keeps its id.
    assert get(f"{apicurio}/subjects") == ["junk-value"]
    assert json.loads(get(f"{apicurio}/schemas/ids/{lowest}")["schema"])["name"] == f"Junk{lowest - 1}"
    for _, _, schema_id, _ in rows:
        if schema_id != lowest:
            assert get_status(f"{apicurio}/schemas/ids/{schema_id}") == 404, schema_id

    # A subject version registered with the registry's own id before push is a conflict too.
    subject, version, schema_id, file = rows[0]
    assert schema_id != lowest
    with open(os.path.join(SCHEMAS, file)) as f:
        own = client.register_schema(subject, Schema(f.read(), "AVRO"))
    assert own != schema_id
    pushed = push(apicurio)
    assert pushed.returncode != 0
    error = pushed.stderr.strip().splitlines()[-1]
    assert f"{subject} version {version} is already registered with id {own}" in error, pushed.stderr[-3000:]
    assert f"with id {schema_id}" in error, error


def test_push_into_a_registry_without_import_mode_checks_and_writes_nothing(registry):
    """`tidings registry` (conftest) speaks Confluent's API, is read-only and has no IMPORT
    mode: push takes the Confluent path and, unable to choose ids, only looks every schema
    up, finding each under Tidings' id."""
    rows = listing()
    pushed = push(registry)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert pushed.stdout.splitlines() == pushed_lines(rows)
    assert "refused IMPORT mode" in pushed.stderr, pushed.stderr[-3000:]
