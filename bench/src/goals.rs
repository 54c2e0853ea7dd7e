//! The performance goals of issue #20, each computed from what one run measured: which goals a
//! run can judge depends on its options (closed or open loop, SQLite or PostgreSQL, a held
//! backlog), and "met" is always the measured figure compared with the target.

use serde_json::{Value, json};

use crate::report::{Outcome, percentile};

/// Which side of the target a figure must fall on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtLeast(f64),
    Below(f64),
}

impl Bound {
    fn holds(self, figure: f64) -> bool {
        match self {
            Bound::AtLeast(t) => figure >= t,
            Bound::Below(t) => figure < t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Bound::AtLeast(t) => format!("≥ {} {unit}", thousands(t)),
            Bound::Below(t) => format!("< {} {unit}", thousands(t)),
        }
    }
}

/// One goal as judged by one run.
#[derive(Clone, Debug)]
pub struct Goal {
    pub name: String,
    pub bound: Bound,
    pub unit: &'static str,
    /// None: this run could not measure it (see `note`).
    pub figure: Option<f64>,
    /// Met by another route than the figure (the runner's pace: intake pushed back instead).
    pub met_otherwise: bool,
    pub note: String,
}

impl Goal {
    pub fn new(name: String, bound: Bound, unit: &'static str, figure: Option<f64>) -> Goal {
        Goal {
            name,
            bound,
            unit,
            figure,
            met_otherwise: false,
            note: String::new(),
        }
    }

    /// Some(true/false) when measured; None when the run could not tell.
    pub fn met(&self) -> Option<bool> {
        self.figure
            .map(|f| self.met_otherwise || self.bound.holds(f))
    }

    pub fn json(&self) -> Value {
        json!({
            "goal": self.name,
            "target": self.bound.text(self.unit),
            "figure": self.figure.map(|f| (f * 100.0).round() / 100.0),
            "unit": self.unit,
            "met": self.met(),
            "note": self.note,
        })
    }

    pub fn human(&self) -> String {
        let figure = self.figure.map_or("-".to_string(), |f| {
            format!("{} {}", thousands(f), self.unit)
        });
        let verdict = match self.met() {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!("  ({})", self.note)
        };
        format!(
            "{:<52} {:>14}  target {:<16} {verdict}{note}",
            self.name,
            figure,
            self.bound.text(self.unit)
        )
    }
}

/// `12345.6` → `12,346`; small figures keep a decimal or two.
fn thousands(x: f64) -> String {
    if x.abs() < 10.0 {
        return format!("{x:.2}");
    }
    if x.abs() < 100.0 {
        return format!("{x:.1}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

/// The backlog the goal on peak RSS is about.
pub const BACKLOG_RUNS: usize = 100_000;
/// Open loop rates of the latency and idle CPU goals.
pub const OPEN_LOOP_FAST: f64 = 5_000.0;
pub const OPEN_LOOP_IDLE: f64 = 200.0;

impl Outcome<'_> {
    /// The goals this run's options let it judge, in the order of issue #20.
    pub fn goals(&self) -> Vec<Goal> {
        let s = &self.settings;
        let backend = s["backend"].as_str().unwrap_or_default();
        let one_node = s["nodes"].as_u64() == Some(1);
        let held = s["backlog"].as_bool() == Some(true);
        let rate = s["rate"].as_f64();
        let clients = s["concurrency"].as_u64().unwrap_or(0);
        let p99_ms = self.latency_p99_ms();
        let mut goals = Vec::new();
        match (rate, backend) {
            _ if held || !one_node => {}
            (None, "sqlite") => {
                goals.push(Goal::new(
                    format!("W1 SQLite closed loop, {clients} clients: runs/s"),
                    Bound::AtLeast(10_000.0),
                    "runs/s",
                    self.completed_per_s(),
                ));
                goals.push(Goal::new(
                    "  same run: event-to-delivery p99".to_string(),
                    Bound::Below(100.0),
                    "ms",
                    p99_ms,
                ));
                goals.push(self.pace_goal(p99_ms));
            }
            (None, "postgres") => goals.push(Goal::new(
                format!("W1 PostgreSQL one node, {clients} clients: runs/s"),
                Bound::AtLeast(3_000.0),
                "runs/s",
                self.completed_per_s(),
            )),
            (Some(r), _) if r >= OPEN_LOOP_FAST => goals.push(Goal::new(
                format!("open loop {r:.0} events/s: event-to-delivery p99"),
                Bound::Below(25.0),
                "ms",
                p99_ms,
            )),
            (Some(r), _) if r <= OPEN_LOOP_IDLE => goals.push(Goal::new(
                format!("open loop {r:.0} events/s: flowd CPU"),
                Bound::Below(0.1),
                "cores",
                self.flowd_cores(),
            )),
            _ => {}
        }
        if held {
            goals.push(self.backlog_goal());
        }
        goals
    }

    fn latency_p99_ms(&self) -> Option<f64> {
        let mut ns = self.deliveries.latency_ns.clone();
        ns.sort_unstable();
        percentile(&ns, 0.99).map(|ns| ns as f64 / 1e6)
    }

    fn flowd_cores(&self) -> Option<f64> {
        self.flowd_cpu_s.map(|c| c / self.window_s.max(1e-9))
    }

    /// Runs completed per second from the first send to the last delivery.
    fn completed_per_s(&self) -> Option<f64> {
        self.rates().2
    }

    /// While events arrive, runs complete at ≥ 90 % of the accepted rate; or intake pushed
    /// back (429s) and the p99 stayed under 100 ms.
    fn pace_goal(&self, p99_ms: Option<f64>) -> Goal {
        let accepted = self.rates().0;
        let during = self.phases().map(|(r, _, _, _)| r);
        let share = match (during, accepted) {
            (Some(d), Some(a)) if a > 0.0 => Some(100.0 * d / a),
            _ => None,
        };
        let pushed_back = self.load.pushed_back;
        let mut goal = Goal::new(
            "  same run: completed while sending / accepted".to_string(),
            Bound::AtLeast(90.0),
            "%",
            share,
        );
        goal.met_otherwise = pushed_back > 0 && p99_ms.is_some_and(|p| p < 100.0);
        goal.note = format!("{pushed_back} answered 429");
        goal
    }

    fn backlog_goal(&self) -> Goal {
        let backlog = self.deliveries.max_backlog;
        let enough = backlog >= BACKLOG_RUNS;
        let mut goal = Goal::new(
            format!(
                "peak RSS with a {}-run backlog",
                thousands(BACKLOG_RUNS as f64)
            ),
            Bound::Below(50.0),
            "MB",
            enough.then(|| self.peak_rss_kb() as f64 / 1024.0),
        );
        goal.note = format!("backlog reached {backlog} runs");
        goal
    }
}

/// The goals of several runs as one table.
pub fn table(goals: &[Goal]) -> String {
    let mut out = String::from("goals (issue #20):\n");
    for g in goals {
        out.push_str("  ");
        out.push_str(&g.human());
        out.push('\n');
    }
    out
}
