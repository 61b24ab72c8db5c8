//! Schema Registry wire format: `[0u8][schema id: u32 big-endian][Avro binary datum]`.

use crate::SchemaError;

const MAGIC: u8 = 0;
pub const HEADER_LEN: usize = 5;

/// Prefixes `datum` with the magic byte and `schema_id`.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Splits a framed record into its schema id and datum.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), SchemaError> {
    if bytes.len() < HEADER_LEN {
        return Err(SchemaError::Framing("shorter than the 5-byte header"));
    }
    if bytes[0] != MAGIC {
        return Err(SchemaError::Framing("magic byte is not 0"));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_then_unframe_round_trips() {
        let framed = frame(0x0102_0304, b"abc");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'a', b'b', b'c']);
        assert_eq!(unframe(&framed).unwrap(), (0x0102_0304, &b"abc"[..]));
    }

    #[test]
    fn short_or_unmagical_input_is_refused() {
        assert!(matches!(unframe(&[0, 0, 0]), Err(SchemaError::Framing(_))));
        assert!(matches!(
            unframe(&[1, 0, 0, 0, 1, 9]),
            Err(SchemaError::Framing(_))
        ));
    }
}
