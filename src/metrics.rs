//! Metrics for Prometheus (`[metrics] listen` of the DP and the resolver; docs/operations.md):
//! the OpenMetrics text format, written by `prometheus-client` from the servers' own
//! counters at each scrape, over a small HTTP/1.1 endpoint (`GET /metrics`). A server
//! implements [`Source`]; nothing is counted twice and the hot paths keep their plain
//! atomic counters.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

/// The media type of `/metrics` for a client that accepts OpenMetrics (Prometheus does).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type for other clients (curl, `promtool check metrics`): Prometheus text 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The port `[metrics] listen` takes when it names none.
pub const DEFAULT_PORT: u16 = 9153;
/// The longest request head read, and how long a client may take to send it.
const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a server shows at each scrape.
pub trait Source: Send + Sync + 'static {
    fn collect(&self, scrape: &mut Scrape<'_>) -> fmt::Result;
}

/// One scrape being written: each call writes one metric family.
pub struct Scrape<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Scrape<'_> {
    /// A counter (exposed as `NAME_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let c = ConstCounter::new(value);
        let e = self
            .encoder
            .encode_descriptor(name, help, None, c.metric_type())?;
        c.encode(e)
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> fmt::Result {
        let g = ConstGauge::new(value);
        let e = self
            .encoder
            .encode_descriptor(name, help, None, g.metric_type())?;
        g.encode(e)
    }

    /// A counter family with one label, a value per label value.
    pub fn counters<V: AsRef<str>>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(V, u64)],
    ) -> fmt::Result {
        let mut family = self.encoder.encode_descriptor(
            name,
            help,
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (v, n) in values {
            let labels = [(label, v.as_ref())];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A histogram of durations in seconds.
    pub fn latency(&mut self, name: &str, help: &str, l: &Latency) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_NS
            .iter()
            .map(|&b| b as f64 / 1e9)
            .chain([f64::MAX])
            .zip(l.buckets.iter().map(|b| b.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = l.sum_ns.load(Relaxed) as f64 / 1e9;
        let mut e = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        // Per-bucket counts: prometheus-client adds them up itself.
        e.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    /// A gauge family with one label, a value per label value.
    pub fn gauges<V: AsRef<str>>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(V, i64)],
    ) -> fmt::Result {
        let mut family = self.encoder.encode_descriptor(
            name,
            help,
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (v, n) in values {
            let labels = [(label, v.as_ref())];
            ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Upper bounds of [`Latency`]'s buckets, in nanoseconds: from 10 µs (an answer from
/// memory) to 2.5 s (a lookup that walked slow servers); longer ones go to `+Inf`.
const LATENCY_BOUNDS_NS: [u64; 17] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// A histogram of durations, for the hot paths: one relaxed add to a bucket and one to the
/// sum per observation, no lock and no allocation. Shown as a Prometheus histogram in
/// seconds.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(LATENCY_BOUNDS_NS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

/// Adapts a [`Source`] to prometheus-client's collector.
struct Collect(Arc<dyn Source>);

impl fmt::Debug for Collect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mimi metrics source")
    }
}

impl Collector for Collect {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.0.collect(&mut Scrape { encoder })
    }
}

/// The text of one scrape of `source`.
pub fn render(source: &Arc<dyn Source>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(source.clone())));
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The same scrape in the Prometheus text format 0.0.4, for clients that do not accept
/// OpenMetrics: a counter family takes its samples' `_total` name in its HELP and TYPE
/// lines, and there is no `# EOF`. Everything else is the same text.
pub fn to_text_004(openmetrics: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name);
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Serves `GET /metrics` on `listen` until the returned task is aborted; returns it and
/// the bound address (port 0 becomes a real one).
pub async fn serve(
    listen: SocketAddr,
    source: Arc<dyn Source>,
) -> std::io::Result<(JoinHandle<()>, SocketAddr)> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let source = source.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &source).await {
                    debug!(%peer, "metrics request: {e}");
                }
            });
        }
    });
    Ok((task, bound))
}

/// Reads one request head and answers it; the connection then closes.
async fn answer(mut stream: TcpStream, source: &Arc<dyn Source>) -> std::io::Result<()> {
    let mut head = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let complete = loop {
        let n = match tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut head[len..])).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        len += n;
        if head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if len == head.len() {
            break false;
        }
    };
    let (status, content_type, body) = if !complete {
        (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request too large\n".into(),
        )
    } else {
        respond(&head[..len], source)
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Status, content type and body for a request head.
fn respond(head: &[u8], source: &Arc<dyn Source>) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let openmetrics = String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .lines()
        .any(|l| l.starts_with("accept:") && l.contains("application/openmetrics-text"));
    match (method, path) {
        ("GET", "/metrics") => match render(source) {
            Ok(text) if openmetrics => ("200 OK", CONTENT_TYPE, text),
            Ok(text) => ("200 OK", TEXT_CONTENT_TYPE, to_text_004(&text)),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain",
                "the metrics could not be written\n".into(),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "metrics are at /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics is served\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Source for Fixed {
        fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
            s.counter("mimi_test_events", "Events.", 7)?;
            s.gauges("mimi_test_size", "Sizes.", "zone", &[("a.example.", 3)])
        }
    }

    struct Timed(Latency);

    impl Source for Timed {
        fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
            s.latency("mimi_test_seconds", "Times.", &self.0)
        }
    }

    #[test]
    fn latency_is_a_histogram_in_seconds_with_cumulative_buckets() {
        let l = Latency::default();
        l.observe(Duration::from_micros(5));
        l.observe(Duration::from_micros(40));
        l.observe(Duration::from_secs(10));
        assert_eq!(l.count(), 3);
        let source: Arc<dyn Source> = Arc::new(Timed(l));
        let text = to_text_004(&render(&source).unwrap());
        assert!(
            text.contains("# TYPE mimi_test_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("mimi_test_seconds_count 3\n"), "{text}");
        assert!(text.contains("mimi_test_seconds_sum 10.000045\n"), "{text}");
        assert!(
            text.contains("mimi_test_seconds_bucket{le=\"0.00001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mimi_test_seconds_bucket{le=\"0.00005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("mimi_test_seconds_bucket{le=\"2.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("mimi_test_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn scrapes_are_openmetrics_and_other_requests_are_refused() {
        let source: Arc<dyn Source> = Arc::new(Fixed);
        let (status, ctype, body) = respond(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
            &source,
        );
        assert_eq!((status, ctype), ("200 OK", CONTENT_TYPE));
        assert!(
            body.contains("# TYPE mimi_test_events counter\nmimi_test_events_total 7\n"),
            "{body}"
        );
        assert!(
            body.contains("mimi_test_size{zone=\"a.example.\"} 3\n"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
        // Without OpenMetrics in Accept: the text format, counters named with `_total`.
        let (_, ctype, text) = respond(b"GET /metrics HTTP/1.1\r\n\r\n", &source);
        assert_eq!(ctype, TEXT_CONTENT_TYPE);
        assert!(
            text.contains("# HELP mimi_test_events_total Events.\n# TYPE mimi_test_events_total counter\nmimi_test_events_total 7\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE mimi_test_size gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(
            respond(b"GET / HTTP/1.1\r\n\r\n", &source).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", &source).0,
            "405 Method Not Allowed"
        );
        assert_eq!(
            respond(b"\xff\xfe\r\n\r\n", &source).0,
            "405 Method Not Allowed"
        );
    }
}
