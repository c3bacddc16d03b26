//! Printing: the machine, and markdown tables of what was measured.

use hdrhistogram::Histogram;

/// `nproc`, the CPU model, total memory and the load average, from /proc.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs ({model}), {mem_gib:.1} GiB memory, load average {}",
        load.join(" ")
    )
}

/// `123 µs` or `1.23 ms`.
pub(crate) fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// A signed difference of microseconds.
pub(crate) fn delta(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "+" };
    format!("{sign}{}", micros(us.unsigned_abs()))
}

pub(crate) fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// `p50 / p99 / p99.9 / max` of a histogram of microseconds.
pub(crate) fn spread(h: &Histogram<u64>) -> [String; 4] {
    [
        micros(quantile(h, 0.5)),
        micros(quantile(h, 0.99)),
        micros(quantile(h, 0.999)),
        micros(h.max()),
    ]
}

/// The median of the rounds' ratios `a[k] / b[k]`: each round measures
/// every target back to back, so a slow drift of the machine cancels out
/// within a round.
pub(crate) fn median_of_ratios(a: &[f64], b: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect();
    ratios.sort_by(f64::total_cmp);
    match ratios.len() {
        0 => 0.0,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    }
}

/// Whether a target was met, said plainly.
pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// A markdown table.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn print(&self) {
        println!("| {} |", self.header.join(" | "));
        println!(
            "|{}",
            self.header.iter().map(|_| "---|").collect::<String>()
        );
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(micros(87), "87 µs");
        assert_eq!(micros(1234), "1.23 ms");
        assert_eq!(micros(45_600), "45.6 ms");
        assert_eq!(delta(-120), "-120 µs");
        assert_eq!(delta(2500), "+2.50 ms");
    }

    #[test]
    fn ratios_are_taken_per_round_then_the_median() {
        assert_eq!(median_of_ratios(&[1.0, 4.0, 9.0], &[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(median_of_ratios(&[1.0, 3.0], &[1.0, 1.0]), 2.0);
        assert_eq!(median_of_ratios(&[2.0, 3.0, 10.0], &[1.0, 1.0, 1.0]), 3.0);
        assert_eq!(median_of_ratios(&[], &[]), 0.0);
    }

    #[test]
    fn an_empty_histogram_reads_as_zero() {
        let h = crate::client::micros_histogram();
        assert_eq!(quantile(&h, 0.99), 0);
    }
}
