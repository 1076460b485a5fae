//! Prometheus metrics, written in the text exposition format by hand (a few
//! counters and one histogram do not need a metrics framework).

use sealrun_control::Gauges;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// Records how long a run waited between submission and assignment.
    pub(crate) fn dispatched(&self, waited_ms: u64) {
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

    /// The exposition text.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
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
        m.dispatched(0);
        m.dispatched(3);
        m.dispatched(20_000);
        let text = m.render(&Gauges::default());
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"60\"} 3\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("sealrun_dispatch_latency_seconds_count 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.http_request("GET", "/a\"b", 200);
        assert!(m.render(&Gauges::default()).contains("route=\"/a\\\"b\""));
    }
}
