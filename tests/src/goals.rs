//! The goals `make bench` guards: each bench prints one line per goal (the figure, the goal,
//! ok or over) and, when `BENCH_SUMMARY` names a file, appends the same to it, so that the
//! last step of `make bench` and `make bench-quick` (`bench-summary`) can list every goal and
//! how far each figure is from it.

use std::fmt::Write as _;
use std::io::Write as _;

/// Which side of the goal a figure must stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The figure must be at least the goal (a rate, a ratio).
    AtLeast,
    /// The figure must be at most the goal (a time, a size).
    AtMost,
}

/// One goal and the figure measured for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// What is measured, e.g. `render / plain copy (corpus)`.
    pub name: String,
    pub figure: f64,
    pub bound: Bound,
    pub goal: f64,
    /// Unit of figure and goal (`x`, `ms`, `MB`, ...); empty for a bare ratio.
    pub unit: String,
}

impl Goal {
    pub fn at_least(name: impl Into<String>, figure: f64, goal: f64, unit: &str) -> Self {
        Self { name: name.into(), figure, bound: Bound::AtLeast, goal, unit: unit.to_owned() }
    }

    pub fn at_most(name: impl Into<String>, figure: f64, goal: f64, unit: &str) -> Self {
        Self { name: name.into(), figure, bound: Bound::AtMost, goal, unit: unit.to_owned() }
    }

    pub fn ok(&self) -> bool {
        match self.bound {
            Bound::AtLeast => self.figure >= self.goal,
            Bound::AtMost => self.figure <= self.goal,
        }
    }

    /// How far the figure is from the goal, as a fraction of the goal: positive is room left,
    /// negative is how much it is over.
    pub fn margin(&self) -> f64 {
        if self.goal == 0.0 {
            return if self.ok() { 0.0 } else { -1.0 };
        }
        match self.bound {
            Bound::AtLeast => self.figure / self.goal - 1.0,
            Bound::AtMost => 1.0 - self.figure / self.goal,
        }
    }

    /// The line `make bench` prints.
    pub fn line(&self) -> String {
        let op = match self.bound {
            Bound::AtLeast => ">=",
            Bound::AtMost => "<=",
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "goal  {:<56} {:>10} {:<3} goal {op} {:<8} {:<4} ({:+.0}%)",
            self.name,
            figure(self.figure),
            self.unit,
            figure(self.goal),
            if self.ok() { "ok" } else { "over" },
            self.margin() * 100.0
        );
        out
    }

    /// One line of the summary file: tab-separated, the name last (it may hold spaces).
    fn record(&self) -> String {
        let bound = match self.bound {
            Bound::AtLeast => "at_least",
            Bound::AtMost => "at_most",
        };
        format!("{}\t{bound}\t{}\t{}\t{}\n", self.figure, self.goal, self.unit, self.name)
    }

    /// Reads a line `Goal::record` wrote.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.splitn(5, '\t');
        let figure = fields.next()?.parse().ok()?;
        let bound = match fields.next()? {
            "at_least" => Bound::AtLeast,
            "at_most" => Bound::AtMost,
            _ => return None,
        };
        let goal = fields.next()?.parse().ok()?;
        let unit = fields.next()?.to_owned();
        let name = fields.next()?.trim_end().to_owned();
        Some(Self { name, figure, bound, goal, unit })
    }
}

/// A figure with as many decimals as its size needs.
fn figure(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

/// Prints the goal's line and appends it to the `BENCH_SUMMARY` file, if one is named.
pub fn report(goal: Goal) {
    println!("{}", goal.line());
    if let Some(path) = std::env::var_os("BENCH_SUMMARY") {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(goal.record().as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot append to {}: {e}", std::path::Path::new(&path).display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_the_goal_it_was() {
        let goal = Goal::at_most("stripped berth-releases", 9.87, 10.0, "MB");
        assert_eq!(Goal::parse(&goal.record()), Some(goal));
    }

    #[test]
    fn margins_say_room_left_or_how_far_over() {
        let over = Goal::at_least("render / plain copy", 0.72, 0.9, "");
        assert!(!over.ok());
        assert!((over.margin() + 0.2).abs() < 1e-9);
        assert!(over.line().contains("over"), "{}", over.line());
        let ok = Goal::at_most("init", 15.0, 20.0, "ms");
        assert!(ok.ok());
        assert!((ok.margin() - 0.25).abs() < 1e-9);
    }
}
