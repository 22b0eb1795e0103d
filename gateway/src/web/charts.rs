//! The pages' charts, drawn on the server as SVG by `charts-rs` (which escapes every text
//! it draws), so that they read without JavaScript. Each page also shows the same
//! figures as a table, the charts' text alternative.

use charts_rs::{BarChart, HorizontalBarChart, LineChart, Series};

/// A chart's SVG, or nothing when it cannot be drawn (the table beside it still is).
fn svg(drawn: Result<String, charts_rs::Error>) -> Option<String> {
    match drawn {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "a chart could not be drawn");
            None
        }
    }
}

fn number(s: &str) -> f32 {
    s.parse().unwrap_or(0.0)
}

/// Instant-runoff rounds: one group of bars per round, one bar per option still running.
#[must_use]
pub fn rounds(options: &[String], rounds: &[synco_crds::Round]) -> Option<String> {
    if rounds.is_empty() {
        return None;
    }
    let series = options
        .iter()
        .map(|o| {
            Series::new_nullable(
                o.clone(),
                rounds
                    .iter()
                    .map(|r| r.counts.iter().find(|c| &c.option == o).map(|c| number(&c.count)))
                    .collect(),
            )
        })
        .collect();
    let labels = (1..=rounds.len()).map(|i| format!("Round {i}")).collect();
    let mut chart = BarChart::new(series, labels);
    chart.title.text = "First preferences by round".to_owned();
    chart.width = 640.0;
    chart.height = 360.0;
    svg(chart.svg())
}

/// An allocation: each floor's share of capacity and the surplus cap, in percent.
#[must_use]
pub fn allocation(shares: &[(String, u32)]) -> Option<String> {
    if shares.is_empty() {
        return None;
    }
    let labels = shares.iter().map(|(l, _)| l.clone()).collect();
    #[allow(clippy::cast_precision_loss)]
    let values = shares.iter().map(|(_, p)| *p as f32).collect();
    let mut chart = HorizontalBarChart::new(
        vec![Series::new("Share of capacity (%)".to_owned(), values)],
        labels,
    );
    chart.title.text = "The allocation in force".to_owned();
    chart.width = 640.0;
    chart.height = 80.0 + 40.0 * shares.len() as f32;
    svg(chart.svg())
}

/// A member's usage through a month against its quota: the tokens used up to each
/// day it used any, beside the monthly budget.
#[must_use]
pub fn usage(budget: u64, month_to_date: &[(String, u64)]) -> Option<String> {
    if month_to_date.is_empty() {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let series = vec![
        Series::new(
            "Used so far".to_owned(),
            month_to_date.iter().map(|(_, t)| *t as f32).collect(),
        ),
        Series::new(
            "Monthly budget".to_owned(),
            vec![budget as f32; month_to_date.len()],
        ),
    ];
    let labels = month_to_date
        .iter()
        .map(|(day, _)| day.get(5..).unwrap_or(day).to_owned())
        .collect();
    let mut chart = LineChart::new(series, labels);
    chart.title.text = "Your tokens this month against your budget".to_owned();
    chart.width = 640.0;
    chart.height = 320.0;
    svg(chart.svg())
}

/// Surplus revenue by month, in the currency's major units (two decimals).
#[must_use]
pub fn revenue(currency: &str, months: &[(String, u64)]) -> Option<String> {
    if months.is_empty() {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let values = months.iter().map(|(_, minor)| *minor as f32 / 100.0).collect();
    let labels = months.iter().map(|(m, _)| m.clone()).collect();
    let mut chart = BarChart::new(vec![Series::new(format!("Revenue ({currency})"), values)], labels);
    chart.title.text = "Surplus revenue by month".to_owned();
    chart.width = 640.0;
    chart.height = 320.0;
    svg(chart.svg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_and_escape_names() {
        let s = allocation(&[
            ("<script>alert(1)</script>".to_owned(), 50),
            ("Surplus".to_owned(), 20),
        ])
        .unwrap();
        assert!(s.starts_with("<svg"), "{s}");
        assert!(!s.contains("<script>"), "{s}");
        assert!(s.contains("&lt;script&gt;"), "{s}");
        let days = [("2026-11-03".to_owned(), 100), ("2026-11-09".to_owned(), 250)];
        let line = usage(1000, &days).unwrap();
        assert!(line.contains("Used so far") && line.contains("11-09"), "{line}");
        assert!(usage(1000, &[]).is_none());
        let bars = revenue("EUR", &[("2026-10".to_owned(), 0), ("2026-11".to_owned(), 1234)]).unwrap();
        assert!(
            bars.contains("2026-11") && bars.contains("Revenue (EUR)"),
            "{bars}"
        );
        assert!(rounds(&[], &[]).is_none());
    }
}
