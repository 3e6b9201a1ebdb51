//! Times on the supervisor wire: nanoseconds since the Unix epoch, 0 for "not yet".

use std::time::{Duration, SystemTime};

/// `t` as nanoseconds since the epoch (0 for times before it).
pub fn to_nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `nanos` stands for; `None` for 0 (or a negative value).
pub fn from_nanos(nanos: i64) -> Option<SystemTime> {
    (nanos > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip_and_zero_means_unset() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(from_nanos(to_nanos(t)), Some(t));
        assert_eq!(from_nanos(0), None);
        assert_eq!(to_nanos(SystemTime::UNIX_EPOCH), 0);
    }
}
