//! Prometheus metrics of the control plane.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::time::Duration;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    calls: IntCounterVec,
    call_seconds: HistogramVec,
    image_loads: IntCounterVec,
    load_seconds: HistogramVec,
    jobs: IntCounterVec,
    jobs_running: IntGauge,
    placements: IntCounterVec,
    verifications: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; an error here is a programming error
    // caught by the first test run.
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let calls = must(IntCounterVec::new(
            Opts::new(
                "accelhub_calls_total",
                "Synchronous calls, by IP, device and outcome",
            ),
            &["ip", "device", "outcome"],
        ));
        let call_seconds = must(HistogramVec::new(
            HistogramOpts::new("accelhub_call_seconds", "Latency of synchronous calls")
                .buckets(prometheus::exponential_buckets(0.0001, 2.5, 16).unwrap_or_default()),
            &["device"],
        ));
        let image_loads = must(IntCounterVec::new(
            Opts::new(
                "accelhub_image_loads_total",
                "Image loads by device; cached=false counts cold starts (compile, program)",
            ),
            &["device", "cached"],
        ));
        let load_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "accelhub_image_load_seconds",
                "Time to load an image that was not loaded (compile a module, program a \
                 device slot): the reconfiguration cost, by device class",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.5, 14).unwrap_or_default()),
            &["device"],
        ));
        let placements = must(IntCounterVec::new(
            Opts::new(
                "accelhub_job_placements_total",
                "Jobs leased to a worker, by what its device held: warm (the image loaded), \
                 resident (the job's resident data held) or cold (a reconfiguration)",
            ),
            &["placement"],
        ));
        let jobs = must(IntCounterVec::new(
            Opts::new(
                "accelhub_jobs_finished_total",
                "Job attempts finished, by outcome",
            ),
            &["outcome"],
        ));
        let jobs_running = must(IntGauge::new(
            "accelhub_jobs_running",
            "Jobs running on this node's agent",
        ));
        let verifications = must(IntCounterVec::new(
            Opts::new(
                "accelhub_verifications_total",
                "Verified versions, by status",
            ),
            &["status"],
        ));
        let http_requests = must(IntCounterVec::new(
            Opts::new(
                "accelhub_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        ));
        let http_seconds = must(HistogramVec::new(
            HistogramOpts::new("accelhub_http_request_seconds", "HTTP request latency")
                .buckets(prometheus::exponential_buckets(0.0001, 2.5, 16).unwrap_or_default()),
            &["route"],
        ));
        for c in [
            Box::new(calls.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(call_seconds.clone()),
            Box::new(image_loads.clone()),
            Box::new(load_seconds.clone()),
            Box::new(placements.clone()),
            Box::new(jobs.clone()),
            Box::new(jobs_running.clone()),
            Box::new(verifications.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_seconds.clone()),
        ] {
            must(registry.register(c));
        }
        Metrics {
            registry,
            calls,
            call_seconds,
            image_loads,
            load_seconds,
            jobs,
            jobs_running,
            placements,
            verifications,
            http_requests,
            http_seconds,
        }
    }

    pub fn call(&self, ip: &str, device: &str, outcome: &str, elapsed: Duration) {
        self.calls.with_label_values(&[ip, device, outcome]).inc();
        self.call_seconds
            .with_label_values(&[device])
            .observe(elapsed.as_secs_f64());
    }

    pub fn image_load(&self, device: &str, load: &accelhub_device::LoadReport) {
        self.image_loads
            .with_label_values(&[device, if load.cached { "true" } else { "false" }])
            .inc();
        if !load.cached {
            self.load_seconds
                .with_label_values(&[device])
                .observe(load.duration.as_secs_f64());
        }
    }

    /// A job leased: `warm`, `resident` or `cold`.
    pub fn placement(&self, kind: &str) {
        self.placements.with_label_values(&[kind]).inc();
    }

    pub fn job_finished(&self, outcome: &str) {
        self.jobs.with_label_values(&[outcome]).inc();
    }

    pub fn jobs_running(&self, delta: i64) {
        self.jobs_running.add(delta);
    }

    pub fn verification(&self, status: &str) {
        self.verifications.with_label_values(&[status]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl accelhub_worker::WorkerMetrics for Metrics {
    fn jobs_running(&self, delta: i64) {
        Metrics::jobs_running(self, delta)
    }
    fn job_finished(&self, outcome: &str) {
        Metrics::job_finished(self, outcome)
    }
    fn image_load(&self, device: &str, load: &accelhub_device::LoadReport) {
        Metrics::image_load(self, device, load)
    }
}
