//! A small Prometheus registry: counters, gauges and histograms with fixed label sets,
//! rendered in the text exposition format at `/metrics`.
//!
//! Lock-free on the hot path: a metric handle is an `Arc` of atomics obtained once and
//! kept by the service that updates it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Set the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Add (or subtract) `d`.
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Default latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
    /// Record one observation (seconds).
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }
    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

#[derive(Debug, Default)]
struct Family {
    help: String,
    kind: &'static str,
    /// Rendered label set → (the labels as given, the series).
    series: BTreeMap<String, (Vec<(String, String)>, Metric)>,
}

/// The registry shared by all services (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
    /// Bumped whenever series are removed, so callers caching handles know to drop them.
    generation: Arc<AtomicU64>,
}

fn label_key(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn get_or_insert(&self, name: &str, help: &str, kind: &'static str, labels: &[(&str, &str)], make: impl FnOnce() -> Metric) -> Metric {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = fams.entry(name.to_string()).or_insert_with(|| Family {
            help: help.into(),
            kind,
            series: BTreeMap::new(),
        });
        fam.series
            .entry(label_key(labels))
            .or_insert_with(|| (labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), make()))
            .1
            .clone()
    }

    /// Changes whenever series are removed ([`Metrics::retain_label`]): a caller that caches
    /// handles compares it and re-fetches, or its updates would go to series no longer exported.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Get (or create) a counter series.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        match self.get_or_insert(name, help, "counter", labels, || Metric::Counter(Arc::default())) {
            Metric::Counter(c) => c,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    /// Get (or create) a gauge series.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
        match self.get_or_insert(name, help, "gauge", labels, || Metric::Gauge(Arc::default())) {
            Metric::Gauge(g) => g,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    /// Get (or create) a histogram series with [`LATENCY_BUCKETS`].
    pub fn histogram(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Histogram> {
        match self.get_or_insert(name, help, "histogram", labels, || {
            Metric::Histogram(Arc::new(Histogram::new(LATENCY_BUCKETS)))
        }) {
            Metric::Histogram(h) => h,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    /// Drop the series of family `name` whose label `label` has a value not in `keep`
    /// (e.g. per-app series of apps that no longer exist); series without that label stay.
    pub fn retain_label(&self, name: &str, label: &str, keep: &[&str]) {
        let keep: std::collections::BTreeSet<&str> = keep.iter().copied().collect();
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fam) = fams.get_mut(name) {
            let before = fam.series.len();
            fam.series.retain(|_, (labels, _)| {
                labels
                    .iter()
                    .find(|(k, _)| k == label)
                    .is_none_or(|(_, v)| keep.contains(v.as_str()))
            });
            if fam.series.len() != before {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Number of series of family `name` (0 when unknown); for tests and diagnostics.
    pub fn series_count(&self, name: &str) -> usize {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        fams.get(name).map_or(0, |f| f.series.len())
    }

    /// Render every series in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            for (labels, (_, m)) in &fam.series {
                match m {
                    Metric::Counter(c) => {
                        let _ = writeln!(out, "{name}{labels} {}", c.get());
                    }
                    Metric::Gauge(g) => {
                        let _ = writeln!(out, "{name}{labels} {}", g.get());
                    }
                    Metric::Histogram(h) => {
                        let inner = labels.trim_start_matches('{').trim_end_matches('}');
                        let sep = if inner.is_empty() { "" } else { "," };
                        let mut cum = 0;
                        for (i, b) in h.bounds.iter().enumerate() {
                            cum += h.buckets[i].load(Ordering::Relaxed);
                            let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"{b}\"}} {cum}");
                        }
                        let count = h.count();
                        let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"+Inf\"}} {count}");
                        let _ = writeln!(out, "{name}_sum{labels} {}", h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
                        let _ = writeln!(out, "{name}_count{labels} {count}");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.counter("proximity_dns_queries_total", "DNS queries.", &[("proto", "udp")]).add(3);
        m.counter("proximity_dns_queries_total", "DNS queries.", &[("proto", "udp")]).inc();
        m.gauge("proximity_dhcp_leases", "Active leases.", &[]).set(7);
        m.histogram("proximity_proxy_request_seconds", "Latency.", &[("host", "a")])
            .observe(0.003);
        let t = m.render();
        assert!(t.contains("# TYPE proximity_dns_queries_total counter"));
        assert!(t.contains("proximity_dns_queries_total{proto=\"udp\"} 4"));
        assert!(t.contains("proximity_dhcp_leases 7"));
        assert!(t.contains("proximity_proxy_request_seconds_bucket{host=\"a\",le=\"0.005\"} 1"));
        assert!(t.contains("proximity_proxy_request_seconds_count{host=\"a\"} 1"));
    }
    #[test]
    fn retain_label_drops_series_of_gone_values() {
        let m = Metrics::new();
        m.gauge("up", "h", &[("app", "a")]).set(1);
        m.gauge("up", "h", &[("app", "b")]).set(1);
        m.counter("other", "h", &[("app", "b")]).inc();
        let g = m.generation();
        m.retain_label("up", "app", &["a"]);
        assert_ne!(m.generation(), g, "removal bumps the generation");
        let text = m.render();
        assert!(text.contains("up{app=\"a\"} 1"), "{text}");
        assert!(!text.contains("up{app=\"b\"}"), "{text}");
        assert!(text.contains("other{app=\"b\"} 1"), "other families untouched: {text}");
    }

    #[test]
    fn retain_label_matches_the_label_among_others() {
        let m = Metrics::new();
        m.counter("req", "h", &[("app", "a\"b"), ("code", "200")]).inc();
        m.counter("req", "h", &[("app", "gone"), ("code", "200")]).inc();
        m.counter("req", "h", &[("app", "gone"), ("code", "502")]).inc();
        m.counter("req", "h", &[("code", "404")]).inc();
        m.histogram("lat", "h", &[("app", "gone")]).observe(0.1);
        let g = m.generation();
        m.retain_label("req", "app", &["a\"b", "-"]);
        m.retain_label("lat", "app", &["a\"b"]);
        assert_eq!(m.series_count("req"), 2, "{}", m.render());
        assert_eq!(m.series_count("lat"), 0);
        assert!(!m.render().contains("gone"), "{}", m.render());
        let g2 = m.generation();
        assert_ne!(g2, g);
        m.retain_label("req", "app", &["a\"b"]);
        assert_eq!(m.generation(), g2, "nothing removed, same generation");
    }
}
