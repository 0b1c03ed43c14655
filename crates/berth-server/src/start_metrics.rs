//! How long each phase of a pod's start takes, as histograms for `/metrics`
//! (`berth_start_phase_seconds{phase=...}`): the profile that says where a create's time goes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds): starts are tens of milliseconds, pulls and builds seconds.
pub const PHASE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    /// Cumulative counts per [`PHASE_BUCKETS`] bound.
    buckets: [u64; PHASE_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct StartMetrics {
    phases: Mutex<BTreeMap<String, Histogram>>,
}

impl StartMetrics {
    pub fn observe(&self, phase: &str, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let h = phases.entry(phase.to_string()).or_default();
        h.count += 1;
        h.sum += seconds;
        for (bound, count) in PHASE_BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }

    /// The series in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let name = "berth_start_phase_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time each phase of a pod start took (image, network, rootfs, runtime; total: create to RUNNING).\n# TYPE {name} histogram"
        );
        for (phase, h) in phases.iter() {
            for (bound, count) in PHASE_BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{phase=\"{phase}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {}\n{name}_sum{{phase=\"{phase}\"}} {}\n{name}_count{{phase=\"{phase}\"}} {}",
                h.count, h.sum, h.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_per_phase() {
        let m = StartMetrics::default();
        m.observe("network", Duration::from_millis(3));
        m.observe("network", Duration::from_millis(60));
        m.observe("runtime", Duration::from_secs(40));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("berth_start_phase_seconds_bucket{phase=\"network\",le=\"0.005\"} 1"));
        assert!(out.contains("berth_start_phase_seconds_bucket{phase=\"network\",le=\"0.075\"} 2"));
        assert!(out.contains("berth_start_phase_seconds_count{phase=\"network\"} 2"));
        assert!(out.contains("berth_start_phase_seconds_bucket{phase=\"runtime\",le=\"30\"} 0"));
        assert!(out.contains("berth_start_phase_seconds_bucket{phase=\"runtime\",le=\"+Inf\"} 1"));
    }
}
