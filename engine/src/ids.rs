//! Trace and span ids, random numbers and timestamps, without extra dependencies.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 64 random bits: the process's random hash keys mixed with a counter and the clock.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A random number in `[0, 1)`.
pub fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A W3C trace id: 16 bytes, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

/// A span id: 8 bytes, shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl TraceId {
    pub fn random() -> TraceId {
        TraceId(((random_u64() as u128) << 64 | random_u64() as u128).max(1))
    }

    /// A trace id from its 32 hex digits.
    pub fn parse(text: &str) -> Option<TraceId> {
        if text.len() != 32 {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(TraceId)
    }
}

impl SpanId {
    pub fn random() -> SpanId {
        SpanId(random_u64().max(1))
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::fmt::Display for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl TraceId {
    /// The 32 hex digits, without allocating.
    pub fn hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = HEX[((self.0 >> (124 - 4 * i)) & 0xf) as usize];
        }
        out
    }
}

impl SpanId {
    /// The 16 hex digits, without allocating.
    pub fn hex(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = HEX[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        out
    }
}

/// [`iso8601`] without allocating: always 27 ASCII characters (years 0 to 9999).
pub fn iso8601_bytes(t: SystemTime) -> [u8; 27] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, m as u64);
    put(8, 2, day as u64);
    put(11, 2, (rem / 3600) as u64);
    put(14, 2, (rem % 3600 / 60) as u64);
    put(17, 2, (rem % 60) as u64);
    put(20, 6, d.subsec_micros() as u64);
    out
}

/// ISO-8601 UTC with microseconds: `2026-11-21T05:47:13.123456Z`.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocation_free_forms_match_the_text_ones() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_033_123_456);
        assert_eq!(std::str::from_utf8(&iso8601_bytes(t)).unwrap(), iso8601(t));
        let (trace, span) = (
            TraceId(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            SpanId(0xdead_beef_0000_0001),
        );
        assert_eq!(
            std::str::from_utf8(&trace.hex()).unwrap(),
            trace.to_string()
        );
        assert_eq!(std::str::from_utf8(&span.hex()).unwrap(), span.to_string());
    }
    use std::time::Duration;

    #[test]
    fn formats_utc_with_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_758_433_123_456);
        assert_eq!(iso8601(t), "2026-11-27T05:47:13.123456Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn ids_have_fixed_width_hex() {
        assert_eq!(
            TraceId(0xab).to_string(),
            "000000000000000000000000000000ab"
        );
        assert_eq!(SpanId(1).to_string().len(), 16);
        assert_ne!(SpanId::random(), SpanId::random());
    }
}
