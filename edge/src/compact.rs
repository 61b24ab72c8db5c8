//! Detaches each request from hyper's read buffer before Socket.IO sees it.
//!
//! hyper parses the URI and header values as slices of the connection's read buffer (8–16 KiB).
//! socketioxide keeps the request's parts for the socket's whole life, and with them that
//! buffer: it was 42% of an idle connection's heap (BENCHMARKS.md, massif). Copying the few
//! hundred bytes a handshake really has lets the buffer go. Headers are bounded too, since
//! they live as long as the connection.

use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};

/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// `req` with its URI and headers copied out of the read buffer, or 431 if its headers are
/// too large. It must run before the router, which clones the URI into an extension.
pub fn detached<B>(mut req: Request<B>) -> Result<Request<B>, StatusCode> {
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let mut headers = HeaderMap::with_capacity(req.headers().len());
    for (name, value) in req.headers() {
        // `from_bytes` copies; hyper already validated the value.
        let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        headers.append(name.clone(), value);
    }
    *req.headers_mut() = headers;
    // `Uri::from_maybe_shared` of an owned copy: the parsed original borrows the read buffer.
    let uri = req.uri().to_string();
    if let Ok(copy) = Uri::try_from(uri) {
        *req.uri_mut() = copy;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn keeps_every_header_and_the_uri() {
        let req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header("upgrade", "websocket")
            .header("x-custom", "a")
            .header("x-custom", "b")
            .body(Body::empty())
            .unwrap();
        let out = detached(req).unwrap();
        assert_eq!(out.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(out.headers()["upgrade"], "websocket");
        let custom: Vec<_> = out.headers().get_all("x-custom").iter().collect();
        assert_eq!(custom, ["a", "b"]);
    }

    #[test]
    fn refuses_oversized_headers() {
        let req = Request::builder()
            .header("cookie", "x".repeat(MAX_HEADER_BYTES))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            detached(req).unwrap_err(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
