//! Prometheus metrics, written in the text exposition format by hand (a few
//! counters and one histogram do not need a metrics framework).

use crate::connections::{Registry, Snapshot};
use crate::error::Error;
use sealrun_control::Gauges;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Shortest metrics token accepted (characters).
const MIN_TOKEN_LEN: usize = 16;

/// The token `/metrics` demands on the API address; only its SHA-256 is
/// kept, and it is compared in constant time.
pub(crate) struct MetricsToken {
    sha256: [u8; 32],
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(***)")
    }
}

impl MetricsToken {
    /// Reads the token from `path` (surrounding whitespace ignored).
    pub(crate) fn read(path: &Path) -> Result<MetricsToken, Error> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("metrics token file {}: {e}", path.display()))
            })?);
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(Error::Config(format!(
                "metrics token file {}: the token must be at least {MIN_TOKEN_LEN} characters",
                path.display()
            )));
        }
        Ok(MetricsToken {
            sha256: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(hash.ct_eq(&self.sha256))
    }
}

/// Upper bounds (seconds) of the dispatch latency histogram buckets.
const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Route template -> (method, status, count): no allocation per request once
/// a route has been seen.
type RequestCounts = HashMap<String, Vec<(String, u16, u64)>>;

/// In-process counters; database-backed gauges are read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    http: Mutex<RequestCounts>,
    dispatch_buckets: [AtomicU64; LATENCY_BOUNDS.len()],
    dispatch_count: AtomicU64,
    dispatch_sum_ms: AtomicU64,
    /// Runs of `dispatch_count` a submission claimed for a waiting poll.
    handed_off: AtomicU64,
    auth_failures: AtomicU64,
}

impl Metrics {
    /// Counts one answered request. `route` is the route template, never a
    /// concrete path, so ids do not explode the label set.
    pub(crate) fn http_request(&self, method: &str, route: &str, status: u16) {
        let Ok(mut http) = self.http.lock() else {
            return;
        };
        if !http.contains_key(route) {
            http.insert(route.to_owned(), Vec::new());
        }
        if let Some(counts) = http.get_mut(route) {
            match counts
                .iter_mut()
                .find(|(m, s, _)| m == method && *s == status)
            {
                Some((_, _, n)) => *n += 1,
                None => counts.push((method.to_owned(), status, 1)),
            }
        }
    }

    /// Records how long a run waited between submission and assignment,
    /// and whether its submission handed it to a waiting poll.
    pub(crate) fn dispatched(&self, waited_ms: u64, handed_off: bool) {
        if handed_off {
            self.handed_off.fetch_add(1, Ordering::Relaxed);
        }
        let secs = waited_ms as f64 / 1000.0;
        for (bound, bucket) in LATENCY_BOUNDS.iter().zip(&self.dispatch_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dispatch_count.fetch_add(1, Ordering::Relaxed);
        self.dispatch_sum_ms.fetch_add(waited_ms, Ordering::Relaxed);
    }

    /// Counts a refused credential.
    pub(crate) fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text: `gauges` from the store, the connections of
    /// each of `listeners`, and this process's counters.
    pub(crate) fn render(
        &self,
        gauges: &Gauges,
        listeners: &[(&'static str, Arc<Registry>)],
    ) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; the results are ignored.
        let _ = writeln!(out, "# HELP sealrun_runs Runs by status.");
        let _ = writeln!(out, "# TYPE sealrun_runs gauge");
        for (status, n) in &gauges.runs_by_status {
            let _ = writeln!(out, "sealrun_runs{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sealrun_dispatch_latency_seconds Time from a run's submission to its assignment to an agent."
        );
        let _ = writeln!(out, "# TYPE sealrun_dispatch_latency_seconds histogram");
        for (bound, bucket) in LATENCY_BOUNDS.iter().zip(&self.dispatch_buckets) {
            let _ = writeln!(
                out,
                "sealrun_dispatch_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.dispatch_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "sealrun_dispatch_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "sealrun_dispatch_latency_seconds_sum {}",
            self.dispatch_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(out, "sealrun_dispatch_latency_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP sealrun_connected_agents Agents heard from recently."
        );
        let _ = writeln!(out, "# TYPE sealrun_connected_agents gauge");
        let _ = writeln!(out, "sealrun_connected_agents {}", gauges.connected_agents);
        let _ = writeln!(
            out,
            "# HELP sealrun_polls_waiting Agents' polls this replica holds open with an offer to be handed a run submitted here (standing, or taken and about to be answered)."
        );
        let _ = writeln!(out, "# TYPE sealrun_polls_waiting gauge");
        let _ = writeln!(out, "sealrun_polls_waiting {}", gauges.polls_waiting);
        let _ = writeln!(
            out,
            "# HELP sealrun_dispatch_handed_off_total Runs answered to the poll a submission to this replica claimed them for, in its own transaction (one whose answer was lost, found again by the agent, is not counted)."
        );
        let _ = writeln!(out, "# TYPE sealrun_dispatch_handed_off_total counter");
        let _ = writeln!(
            out,
            "sealrun_dispatch_handed_off_total {}",
            self.handed_off.load(Ordering::Relaxed)
        );
        let snapshots: Vec<(&str, Snapshot)> = listeners
            .iter()
            .map(|(name, registry)| (*name, registry.snapshot()))
            .collect();
        let _ = writeln!(
            out,
            "# HELP sealrun_connections Client connections open, by listener and state (busy: a request in flight)."
        );
        let _ = writeln!(out, "# TYPE sealrun_connections gauge");
        for (name, s) in &snapshots {
            let busy = s.open.saturating_sub(s.idle);
            let _ = writeln!(
                out,
                "sealrun_connections{{listener=\"{name}\",state=\"busy\"}} {busy}"
            );
            let _ = writeln!(
                out,
                "sealrun_connections{{listener=\"{name}\",state=\"idle\"}} {}",
                s.idle
            );
        }
        let _ = writeln!(
            out,
            "# HELP sealrun_connections_max Connections a listener keeps at once (fitted to the open-file limit)."
        );
        let _ = writeln!(out, "# TYPE sealrun_connections_max gauge");
        for (name, s) in &snapshots {
            let _ = writeln!(
                out,
                "sealrun_connections_max{{listener=\"{name}\"}} {}",
                s.max
            );
        }
        let _ = writeln!(
            out,
            "# HELP sealrun_connections_evicted_total Idle connections closed to make room for a new one."
        );
        let _ = writeln!(out, "# TYPE sealrun_connections_evicted_total counter");
        for (name, s) in &snapshots {
            let _ = writeln!(
                out,
                "sealrun_connections_evicted_total{{listener=\"{name}\"}} {}",
                s.evicted
            );
        }
        let _ = writeln!(
            out,
            "# HELP sealrun_connections_refused_total Connections refused (503, or closed) with every connection busy."
        );
        let _ = writeln!(out, "# TYPE sealrun_connections_refused_total counter");
        for (name, s) in &snapshots {
            let _ = writeln!(
                out,
                "sealrun_connections_refused_total{{listener=\"{name}\"}} {}",
                s.refused
            );
        }
        let _ = writeln!(
            out,
            "# HELP sealrun_auth_failures_total Refused credentials."
        );
        let _ = writeln!(out, "# TYPE sealrun_auth_failures_total counter");
        let _ = writeln!(
            out,
            "sealrun_auth_failures_total {}",
            self.auth_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sealrun_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE sealrun_http_requests_total counter");
        let sorted: BTreeMap<(String, String, u16), u64> = match self.http.lock() {
            Ok(http) => http
                .iter()
                .flat_map(|(route, counts)| {
                    counts
                        .iter()
                        .map(move |(m, s, n)| ((m.clone(), route.clone(), *s), *n))
                })
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        {
            for ((method, route, status), n) in &sorted {
                let _ = writeln!(
                    out,
                    "sealrun_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(method),
                    escape(route)
                );
            }
        }
        out
    }
}

/// Escapes a label value as the exposition format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative() {
        let m = Metrics::default();
        m.dispatched(0, false);
        m.dispatched(3, true);
        m.dispatched(20_000, false);
        let text = m.render(&Gauges::default(), &[]);
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"60\"} 3\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_count 3\n"));
        assert!(text.contains("sealrun_dispatch_handed_off_total 1\n"));
    }

    #[test]
    fn only_the_metrics_token_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.token");
        std::fs::write(&path, "a-metrics-token-of-some-length\n").unwrap();
        let token = MetricsToken::read(&path).unwrap();
        assert!(token.matches("a-metrics-token-of-some-length"));
        assert!(!token.matches("a-metrics-token-of-some-lengt"));
        assert_eq!(format!("{token:?}"), "MetricsToken(***)");
        std::fs::write(&path, "short").unwrap();
        let err = MetricsToken::read(&path).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.http_request("GET", "/a\"b", 200);
        assert!(
            m.render(&Gauges::default(), &[])
                .contains("route=\"/a\\\"b\"")
        );
    }
}
