//! Usage: per flow and UTC day, runs started, succeeded and failed, HTTP attempts,
//! rate-limited waits and runs held by a workspace quota, with a "limits exceeded" filter and a bar chart (inline SVG, drawn here).

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::{SessionAccess, Visitor, workspace_query};
use crate::core::workspace::split_flow_key;
use crate::engine::reads::usage_window;
use crate::store::usage::DayUsage;

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    flow: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Present (a checked box): only days on which a limit made runs wait.
    exceeded: Option<String>,
}

pub struct DayLine {
    /// The flow's id, and `?workspace=` of its workspace for the link.
    pub flow: String,
    pub ws: String,
    pub day: String,
    pub started: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub http_attempts: i64,
    pub rate_limited: i64,
    /// Runs a workspace quota held that day.
    pub quota_held: i64,
    pub exceeded: bool,
}

/// One day's bar: succeeded below, failed on top, in chart units.
pub struct Bar {
    pub day: String,
    pub x: u32,
    /// Every run started that day, behind the other two (runs not finished yet show as the rest).
    pub total_y: u32,
    pub total_height: u32,
    pub ok_y: u32,
    pub ok_height: u32,
    pub failed_y: u32,
    pub failed_height: u32,
    pub total: i64,
    pub exceeded: bool,
}

const CHART_HEIGHT: u32 = 120;
const BAR_STEP: u32 = 20;

#[derive(Template)]
#[template(path = "console/usage.html")]
struct UsagePage {
    layout: Layout,
    flow: String,
    since: String,
    until: String,
    exceeded_only: bool,
    days: Vec<DayLine>,
    bars: Vec<Bar>,
    chart_width: u32,
    chart_height: u32,
}

pub async fn page(
    State(console): State<Console>,
    SessionAccess(access): SessionAccess,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<UsageQuery>,
) -> Result<Response, ConsoleError> {
    let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let filter = usage_window(
        given(&q.flow),
        given(&q.since).as_deref(),
        given(&q.until).as_deref(),
        Utc::now(),
    )
    .map_err(ConsoleError::BadRequest)?;
    let exceeded_only = q.exceeded.is_some();
    let days = console
        .engine
        .usage(&access, &filter, exceeded_only.then_some(true))
        .await?;
    let bars = bars(&days);
    let page = UsagePage {
        layout: Layout::new(&visitor, "usage", "Usage"),
        flow: q.flow.unwrap_or_default(),
        since: q.since.unwrap_or_default(),
        until: q.until.unwrap_or_default(),
        exceeded_only,
        chart_width: (bars.len() as u32 * BAR_STEP).max(BAR_STEP),
        chart_height: CHART_HEIGHT,
        bars,
        days: days.iter().map(day_line).collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

fn day_line(d: &DayUsage) -> DayLine {
    let (workspace, id) = split_flow_key(&d.flow_id);
    DayLine {
        flow: id.to_owned(),
        ws: workspace_query(workspace),
        day: d.day.format("%Y-%m-%d").to_string(),
        started: d.runs_started,
        succeeded: d.runs_succeeded,
        failed: d.runs_failed,
        http_attempts: d.http_attempts,
        rate_limited: d.rate_limited_waits,
        quota_held: d.quota_held,
        exceeded: d.exceeded(),
    }
}

/// The days of `usage` summed over flows, oldest first, scaled to the chart's height.
fn bars(usage: &[DayUsage]) -> Vec<Bar> {
    let mut per_day: BTreeMap<String, (i64, i64, i64, bool)> = BTreeMap::new();
    for d in usage {
        let day = per_day
            .entry(d.day.format("%Y-%m-%d").to_string())
            .or_default();
        day.0 += d.runs_started;
        day.1 += d.runs_succeeded;
        day.2 += d.runs_failed;
        day.3 |= d.exceeded();
    }
    let top = per_day.values().map(|d| d.0).max().unwrap_or(0).max(1);
    let scale = |n: i64| ((n.max(0) as f64 / top as f64) * CHART_HEIGHT as f64).round() as u32;
    per_day
        .into_iter()
        .enumerate()
        .map(|(i, (day, (total, ok, failed, exceeded)))| {
            let (ok_height, failed_height) = (scale(ok), scale(failed));
            let ok_y = CHART_HEIGHT - ok_height;
            Bar {
                day,
                x: i as u32 * BAR_STEP + 2,
                total_y: CHART_HEIGHT - scale(total),
                total_height: scale(total),
                ok_y,
                ok_height,
                failed_y: ok_y.saturating_sub(failed_height),
                failed_height,
                total,
                exceeded,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn day(flow: &str, date: &str, ok: i64, failed: i64, waits: i64) -> DayUsage {
        DayUsage {
            flow_id: flow.into(),
            day: NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
            runs_started: ok + failed,
            runs_succeeded: ok,
            runs_failed: failed,
            http_attempts: 0,
            rate_limited_waits: waits,
            quota_held: 0,
        }
    }

    #[test]
    fn bars_sum_flows_per_day_and_scale_to_the_busiest() {
        let bars = bars(&[
            day("a", "2026-12-02", 2, 0, 0),
            day("a", "2026-12-01", 3, 1, 0),
            day("b", "2026-12-02", 4, 2, 5),
        ]);
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[0].day.as_str(), bars[0].total), ("2026-12-01", 4));
        assert_eq!((bars[1].total, bars[1].exceeded), (8, true));
        // The busiest day fills the chart: 6 succeeded and 2 failed of 8.
        assert_eq!(bars[1].ok_height + bars[1].failed_height, CHART_HEIGHT);
        assert_eq!(bars[1].failed_y + bars[1].failed_height, bars[1].ok_y);
    }

    #[test]
    fn a_day_links_to_its_flow_in_the_flows_workspace() {
        let line = day_line(&day("acme/guest", "2026-12-02", 1, 0, 0));
        assert_eq!(
            (line.flow.as_str(), line.ws.as_str()),
            ("guest", "?workspace=acme")
        );
        let line = day_line(&day("guest", "2026-12-02", 1, 0, 0));
        assert_eq!(
            (line.flow.as_str(), line.ws.as_str()),
            ("guest", "?workspace=default")
        );
    }
}
