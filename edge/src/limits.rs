//! Per-connection limits: an event rate (token bucket), rooms per connection, event size.

use crate::errors::ClientError;
use std::time::{Duration, Instant};

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

/// Refuses text longer than `max` characters.
pub fn check_text(text: &str, max: usize) -> Result<(), ClientError> {
    // Cheap test first: a string of at most `max` bytes has at most `max` characters.
    if text.len() > max && text.chars().count() > max {
        Err(ClientError::TooLarge(format!(
            "text exceeds {max} characters"
        )))
    } else {
        Ok(())
    }
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
        assert!(check_text("héllo", 5).is_ok());
        assert_eq!(check_text("héllo!", 5).unwrap_err().code(), "too_large");
        assert_eq!(check_event_size(11, 10).unwrap_err().code(), "too_large");
        assert_eq!(check_rooms(2, 2).unwrap_err().code(), "invalid");
        assert!(check_rooms(1, 2).is_ok());
    }
}
