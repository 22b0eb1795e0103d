//! The pages' charts, drawn on the server as SVG by `charts-rs` (which escapes every text
//! it draws), so that they read without JavaScript. Each page also shows the same
//! figures as a table, the charts' text alternative.

use charts_rs::{BarChart, HorizontalBarChart, Series};

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

/// A member's quota against its usage this month, in tokens.
#[must_use]
pub fn usage(budget: u64, used: u64) -> Option<String> {
    #[allow(clippy::cast_precision_loss)]
    let series = vec![Series::new(
        "Tokens this month".to_owned(),
        vec![budget as f32, used as f32],
    )];
    let mut chart = BarChart::new(series, vec!["Monthly budget".to_owned(), "Used".to_owned()]);
    chart.title.text = "Your quota and your usage".to_owned();
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
        assert!(usage(1000, 250).unwrap().contains("Used"));
        assert!(rounds(&[], &[]).is_none());
    }
}
