//! CPU time per answer, by process: where a configuration's time goes, the
//! kernel's share included.
//!
//! On this 2-core VM the client, the simulator and the proxy under test
//! share the cores, so throughput at saturation follows the CPU every
//! process spends per answer. Each process's CPU over a segment is read
//! from the kernel's own accounting ([`Cpu::of`]) and divided by the
//! segment's answers; a configuration's cost over another is the difference
//! of their servers' figures, and its share of throughput that difference
//! over all processes' CPU per answer.
//!
//! What it resolves: whole configurations and the user/kernel split
//! (instructions under callgrind, `scripts/instructions.sh`, count user
//! space only, and on loopback half or more of a proxy's CPU is the
//! kernel's). What it does not: a difference of a microsecond or two per
//! small answer. At saturation a process that does more per request also
//! batches more per wake-up, and at a fixed rate each answer's wake-ups
//! dominate; on this VM the same two configurations differed by -0.9 to
//! +6.1 µs at saturation and -8 to +13 µs at 1,000 req/s over ten runs
//! (BENCHMARKS.md, "\[usage\] the budgets by CPU"). For those, count
//! instructions or time the layer in criterion.

use std::io;
use std::path::Path;

/// CPU a process has used since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cpu {
    /// Time on a CPU, all live threads, in nanoseconds
    /// (`/proc/PID/task/*/schedstat`, the scheduler's exact accounting).
    pub(crate) ns: u64,
    /// User and kernel time in clock ticks (`/proc/PID/stat`; sampled, so
    /// only their ratio is used).
    pub(crate) user_ticks: u64,
    pub(crate) kernel_ticks: u64,
}

impl Cpu {
    /// The CPU used so far by process `pid` (`None`: this process).
    pub(crate) fn of(pid: Option<u32>) -> io::Result<Cpu> {
        let dir = match pid {
            Some(pid) => Path::new("/proc").join(pid.to_string()),
            None => Path::new("/proc/self").to_path_buf(),
        };
        let mut ns = 0u64;
        for task in std::fs::read_dir(dir.join("task"))? {
            // A thread that exited between the listing and the read is gone
            // with its time; skip it rather than fail the run.
            if let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) {
                ns += first_number(&text)
                    .ok_or_else(|| io::Error::other(format!("unreadable schedstat: {text:?}")))?;
            }
        }
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        let (user_ticks, kernel_ticks) = ticks(&stat)
            .ok_or_else(|| io::Error::other(format!("unreadable /proc stat: {stat:?}")))?;
        Ok(Cpu {
            ns,
            user_ticks,
            kernel_ticks,
        })
    }

    /// What was used between `earlier` and `self`.
    pub(crate) fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            ns: self.ns.saturating_sub(earlier.ns),
            user_ticks: self.user_ticks.saturating_sub(earlier.user_ticks),
            kernel_ticks: self.kernel_ticks.saturating_sub(earlier.kernel_ticks),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.ns += other.ns;
        self.user_ticks += other.user_ticks;
        self.kernel_ticks += other.kernel_ticks;
    }

    /// The user share of the time, from the ticks (0 when none).
    pub(crate) fn user_share(&self) -> f64 {
        let all = self.user_ticks + self.kernel_ticks;
        if all == 0 {
            0.0
        } else {
            self.user_ticks as f64 / all as f64
        }
    }
}

/// The first number of a `schedstat` line (time on CPU, ns).
fn first_number(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// `utime` and `stime` of a `/proc/PID/stat` line: fields 14 and 15,
/// counted after the command name, which is in parentheses and may hold
/// spaces and parentheses itself.
fn ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let kernel = fields.next()?.parse().ok()?;
    Some((user, kernel))
}

/// The processes of one target, read together around a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Processes {
    /// The proxy under test; `None` for the simulator alone, (a).
    pub(crate) server: Option<u32>,
    pub(crate) simulator: u32,
}

/// A reading of a target's processes and of the client (this process).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    server: Cpu,
    simulator: Cpu,
    client: Cpu,
}

impl Processes {
    pub(crate) fn read(&self) -> io::Result<Reading> {
        Ok(Reading {
            server: match self.server {
                Some(pid) => Cpu::of(Some(pid))?,
                None => Cpu::default(),
            },
            simulator: Cpu::of(Some(self.simulator))?,
            client: Cpu::of(None)?,
        })
    }
}

/// CPU used by a target's processes over its segments, and the answers
/// those segments completed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuUse {
    pub(crate) server: Cpu,
    pub(crate) simulator: Cpu,
    pub(crate) client: Cpu,
    pub(crate) answers: u64,
}

impl CpuUse {
    /// Adds what was used between two readings, over `answers` answers.
    pub(crate) fn add(&mut self, before: Reading, after: Reading, answers: u64) {
        self.server.add(after.server.since(before.server));
        self.simulator.add(after.simulator.since(before.simulator));
        self.client.add(after.client.since(before.client));
        self.answers += answers;
    }

    fn per_answer(&self, cpu: Cpu) -> f64 {
        cpu.ns as f64 / self.answers.max(1) as f64
    }

    /// The proxy's CPU per answer, nanoseconds (0 for the simulator alone).
    pub(crate) fn server_ns(&self) -> f64 {
        self.per_answer(self.server)
    }

    pub(crate) fn simulator_ns(&self) -> f64 {
        self.per_answer(self.simulator)
    }

    pub(crate) fn client_ns(&self) -> f64 {
        self.per_answer(self.client)
    }

    /// Every process's CPU per answer, nanoseconds.
    pub(crate) fn all_ns(&self) -> f64 {
        self.server_ns() + self.simulator_ns() + self.client_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 2093 0 0 0 \
                    731 412 0 0 20 0 3 0 1234 0 0";
        assert_eq!(ticks(stat), Some((731, 412)));
        assert_eq!(ticks("4242 (x) S 1"), None);
        assert_eq!(first_number("123456 789 10\n"), Some(123_456));
        assert_eq!(first_number(""), None);
    }

    #[test]
    fn this_process_reads_and_burning_cpu_shows() {
        let before = Cpu::of(None).expect("reads /proc/self");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = Cpu::of(None).expect("reads /proc/self");
        assert!(after.since(before).ns > 0, "{x}");
        assert_eq!(before.since(after).ns, 0, "saturates, never wraps");
    }

    #[test]
    fn per_answer_figures_divide_by_the_answers() {
        let mut usage = CpuUse::default();
        let zero = Reading {
            server: Cpu::default(),
            simulator: Cpu::default(),
            client: Cpu::default(),
        };
        let cpu = |ns| Cpu {
            ns,
            user_ticks: 1,
            kernel_ticks: 3,
        };
        let after = Reading {
            server: cpu(4_000),
            simulator: cpu(2_000),
            client: cpu(1_000),
        };
        usage.add(zero, after, 2);
        assert_eq!(usage.server_ns(), 2_000.0);
        assert_eq!(usage.all_ns(), 3_500.0);
        assert_eq!(usage.server.user_share(), 0.25);
    }
}
