//! Per-connection limits: an event rate (token bucket), rooms per connection, event size.

use crate::errors::ClientError;
use std::time::{Duration, Instant};
use tidings_schemas::text::{is_blank, normalize};

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let rate = if rate > 0.0 { rate } else { f64::MIN_POSITIVE };
        let burst = burst.max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait.min(3600.0)))
        }
    }

    /// Whether the bucket has refilled to its burst by `now` (it no longer limits anything).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// [`take`](Self::take) as a client error.
    pub fn check(&mut self) -> Result<(), ClientError> {
        self.take(Instant::now())
            .map_err(|wait| ClientError::RateLimited {
                retry_after_ms: (wait.as_millis() as u64).max(1),
            })
    }
}

/// Refuses events whose payload is larger than `max` bytes.
pub fn check_event_size(size: usize, max: usize) -> Result<(), ClientError> {
    if size > max {
        Err(ClientError::TooLarge(format!(
            "event of about {size} bytes exceeds the limit of {max}"
        )))
    } else {
        Ok(())
    }
}

/// The text to send on: normalized (`tidings_schemas::text`), not blank, at most `max`
/// characters once normalized (what is stripped does not count).
pub fn check_text(raw: &str, max: usize) -> Result<String, ClientError> {
    let text = normalize(raw);
    if is_blank(&text) {
        return Err(ClientError::invalid("text is empty"));
    }
    // Cheap test first: a string of at most `max` bytes has at most `max` characters.
    if text.len() > max && text.chars().count() > max {
        return Err(ClientError::TooLarge(format!(
            "text exceeds {max} characters"
        )));
    }
    Ok(text)
}

/// Refuses joining one room more than `max` allows.
pub fn check_rooms(current: usize, max: usize) -> Result<(), ClientError> {
    if current >= max {
        Err(ClientError::invalid(format!(
            "a connection may be in at most {max} rooms"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100));
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        assert!(b.take(t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn text_and_size_limits() {
        assert_eq!(check_text("héllo", 5).unwrap(), "héllo");
        assert_eq!(check_text("héllo!", 5).unwrap_err().code(), "too_large");
        // Measured after stripping: 4000 NULs and a letter is one character.
        let padded = format!("{}a", "\u{0}".repeat(4000));
        assert_eq!(check_text(&padded, 4000).unwrap(), "a");
        assert_eq!(
            check_text("\u{200B}\u{200D}\u{FEFF} ", 10)
                .unwrap_err()
                .code(),
            "invalid"
        );
        // Decomposed accents count once, after NFC.
        assert!(check_text(&"e\u{301}".repeat(5), 5).is_ok());
        assert_eq!(check_event_size(11, 10).unwrap_err().code(), "too_large");
        assert_eq!(check_rooms(2, 2).unwrap_err().code(), "invalid");
        assert!(check_rooms(1, 2).is_ok());
    }
}
