//! The edge's one clock reading: Unix milliseconds now, for its adapters
//! (Slack's deadlines, the console's approval statements).

/// Unix milliseconds now.
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
