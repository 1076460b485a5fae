//! Bounded waits: every wait of the kit fails the test with what it waited
//! for after [`WAIT`], so a test never hangs.

use std::future::Future;
use std::time::Duration;

/// How long any wait of the kit lasts before it fails the test.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` every 50 ms until it returns `Some`, failing the test after
/// [`WAIT`] with `what` in the message.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(WAIT, what, check).await
}

/// [`wait_for`], failing the test after `within` instead: for what takes
/// longer by design (a timeout of the product's own being waited out).
pub async fn wait_for_within<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `cond` holds, polling every 20 ms, for at most `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
