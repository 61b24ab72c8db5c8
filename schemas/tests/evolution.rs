//! Proves that the current version of every schema reads data written with each earlier one,
//! by writing a sample record with the old schema and decoding it the way consumers do.

use apache_avro::schema::{Schema, UnionSchema};
use apache_avro::types::Value;
use apache_avro::{from_avro_datum, to_avro_datum};
use tidings_schemas::registry::{self, Subject};

/// A value of `schema` with every optional field present, so resolution is exercised fully.
fn sample(schema: &Schema, salt: &str) -> Value {
    match schema {
        Schema::Null => Value::Null,
        Schema::Boolean => Value::Boolean(true),
        Schema::Int => Value::Int(7),
        Schema::Long => Value::Long(7_000_000_007),
        Schema::TimestampMillis => Value::TimestampMillis(1_700_000_000_000),
        Schema::Double => Value::Double(0.5),
        Schema::String => Value::String(format!("{salt}-value")),
        Schema::Union(UnionSchema { .. }) => {
            let union = match schema {
                Schema::Union(u) => u,
                _ => unreachable!(),
            };
            let (index, branch) = union
                .variants()
                .iter()
                .enumerate()
                .find(|(_, s)| !matches!(s, Schema::Null))
                .expect("a union with a non-null branch");
            Value::Union(index as u32, Box::new(sample(branch, salt)))
        }
        Schema::Record(record) => Value::Record(
            record
                .fields
                .iter()
                .map(|f| (f.name.clone(), sample(&f.schema, &f.name)))
                .collect(),
        ),
        Schema::Array(array) => Value::Array(vec![
            sample(&array.items, &format!("{salt}-0")),
            sample(&array.items, &format!("{salt}-1")),
        ]),
        other => panic!("sample() does not know {other:?}; extend it with the new type"),
    }
}

fn fields(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn current_versions_read_every_earlier_version() {
    let mut checked = 0;
    for subject in Subject::ALL {
        let (current_version, reader) = registry::current(subject);
        for (version, writer) in registry::history(subject) {
            let written = sample(writer, version.file);
            let datum = to_avro_datum(writer, written.clone()).unwrap();
            let read = from_avro_datum(writer, &mut &datum[..], Some(reader)).unwrap_or_else(|e| {
                panic!(
                    "{} cannot read data written with {}: {e}",
                    current_version.file, version.file
                )
            });
            let written = fields(written);
            for (name, value) in fields(read) {
                if let Some((_, old)) = written.iter().find(|(n, _)| *n == name) {
                    assert_eq!(&value, old, "{name} changed reading {}", version.file);
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, registry::VERSIONS.len());
}

#[test]
fn each_version_is_backward_compatible_with_the_one_before() {
    use apache_avro::schema_compatibility::SchemaCompatibility;
    for subject in Subject::ALL {
        let versions: Vec<_> = registry::history(subject).collect();
        for pair in versions.windows(2) {
            let (old, old_schema) = pair[0];
            let (new, new_schema) = pair[1];
            SchemaCompatibility::can_read(old_schema, new_schema)
                .unwrap_or_else(|e| panic!("{} cannot read {}: {e}", new.file, old.file));
        }
    }
}
