//! The timeline, as one SVG: requests per moment coloured by the version that answered (grey before
//! production existed, red for failures), latency p50/p99 per second on the same time axis, a marker for
//! each swap, bake, rollback and termination, Beanstalk's events as ticks (their text on hover), and one
//! lane per action with a bar per deployment. `timeline.svg` is this; the page embeds it.

use std::fmt::Write;
use std::time::Duration;

use super::layout::{self, Rows};
use super::{escape, seconds, Class, Run};

pub const WIDTH: f64 = 1200.0;
/// The left column: lane names and axis labels.
const LEFT: f64 = 140.0;
const RIGHT: f64 = 24.0;
const SIZE: f64 = 11.0;
const TITLE_SIZE: f64 = 13.0;
const REQUESTS_H: f64 = 150.0;
const LATENCY_H: f64 = 80.0;
const SERIES_H: f64 = 50.0;
const ROW_H: f64 = 17.0;
const BAR_H: f64 = 12.0;

/// Versions' colours, in the order versions first answered.
const PALETTE: &[&str] = &[
    "#2563eb", "#16a34a", "#9333ea", "#0891b2", "#d97706", "#db2777",
];
pub const BEFORE: &str = "#cbd5e1";
pub const FAILED: &str = "#dc2626";
/// Answers from a version that did not say which it is.
pub const UNKNOWN: &str = "#475569";
const P50: &str = "#0f172a";
const P99: &str = "#ea580c";

pub fn version_colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// How a version is named in the pictures: the deployment that deployed it and its first 12 characters.
pub fn version_name(run: &Run, version: &str) -> String {
    let short: String = version.chars().take(12).collect();
    match run.deployment_of(version) {
        Some(d) => format!("{} {short}", d.label),
        None => format!("earlier {short}"),
    }
}

struct Canvas {
    out: String,
}

impl Canvas {
    fn text(&mut self, x: f64, y: f64, class: &str, extra: &str, text: &str) {
        let _ = write!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" class="{class}"{extra}>{}</text>"#,
            escape(text)
        );
    }
}

/// A step of the time axis that leaves room for its labels.
fn time_step(total: Duration, plot_w: f64) -> u64 {
    let label_w = layout::width("00m 00s", SIZE) + 12.0;
    let max_labels = (plot_w / label_w).floor().max(1.0);
    [
        1u64, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
    ]
    .into_iter()
    .find(|s| total.as_secs_f64() / *s as f64 <= max_labels)
    .unwrap_or(7200)
}

fn time_label(s: u64) -> String {
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

/// A round number at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// The timeline of `run` as a standalone SVG document.
pub fn svg(run: &Run) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&timeline(run).0);
    out.push('\n');
    out
}

/// The `<svg>` element itself (the page embeds it), and its height.
pub(crate) fn timeline(run: &Run) -> (String, f64) {
    let total = run.span();
    let plot_w = WIDTH - LEFT - RIGHT;
    let (min_x, max_x) = (LEFT, WIDTH - 4.0);
    let x = |t: Duration| LEFT + t.as_secs_f64() / total.as_secs_f64() * plot_w;
    let versions = run.versions();
    let totals = run.totals();
    let up = run.production_from();
    let mut c = Canvas { out: String::new() };

    // Title.
    let mut y = 20.0;
    c.text(
        8.0,
        y,
        "title",
        &format!(r#" font-size="{TITLE_SIZE}" font-weight="bold""#),
        &format!(
            "Requests to production: {} while it was up, {} failed; {} sent before it existed (grey, not failures)",
            totals.requests, totals.failures, totals.before_up
        ),
    );

    // Legend, wrapped into rows as wide as the picture.
    y += 20.0;
    let mut legend: Vec<(String, String, &str)> = vec![(
        format!("before production existed ({})", totals.before_up),
        BEFORE.into(),
        "before",
    )];
    for (i, v) in versions.iter().enumerate() {
        let n = run
            .samples
            .iter()
            .filter(|s| run.class(s, &versions) == Class::Version(Some(i)))
            .count();
        legend.push((
            format!("answered by {} ({n})", version_name(run, v)),
            version_colour(i).into(),
            "version",
        ));
    }
    let unknown = run
        .samples
        .iter()
        .filter(|s| run.class(s, &versions) == Class::Version(None))
        .count();
    if unknown > 0 {
        legend.push((
            format!("answered, version not said ({unknown})"),
            UNKNOWN.into(),
            "version",
        ));
    }
    legend.push((
        format!("failed ({})", totals.failures),
        FAILED.into(),
        "failed",
    ));
    legend.push(("latency p50".into(), P50.into(), "p50"));
    legend.push(("latency p99".into(), P99.into(), "p99"));
    let mut lx = 8.0;
    c.out.push_str(r#"<g id="legend">"#);
    for (text, colour, kind) in &legend {
        let w = 14.0 + layout::width(text, SIZE);
        if lx + w > WIDTH - 8.0 && lx > 8.0 {
            lx = 8.0;
            y += 16.0;
        }
        let _ = write!(
            c.out,
            r#"<g class="legend-item" data-kind="{kind}"><rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/>"#,
            y - 9.0
        );
        c.text(lx + 14.0, y, "legend-text", "", text);
        c.out.push_str("</g>");
        lx += w + 18.0;
    }
    c.out.push_str("</g>");

    // Markers' labels, in rows above the charts.
    let mut mark_rows = Rows::new(8.0);
    let mark_places: Vec<_> = run
        .marks
        .iter()
        .map(|m| mark_rows.beside(x(m.at), layout::width(&m.label, SIZE), min_x, max_x))
        .collect();
    let marks_top = y + 8.0;
    let chart_top = marks_top + mark_rows.count() as f64 * 15.0 + 6.0;

    // Requests: stacked bars per bucket.
    let bucket_secs = (total.as_secs_f64() / 240.0).ceil().max(1.0);
    let buckets = (total.as_secs_f64() / bucket_secs).ceil().max(1.0) as usize;
    // Per bucket: before production, each version, version not said, failed.
    let columns = versions.len() + 3;
    let mut counts = vec![vec![0u32; columns]; buckets];
    for s in &run.samples {
        let b = ((s.at.as_secs_f64() / bucket_secs) as usize).min(buckets - 1);
        let column = match run.class(s, &versions) {
            Class::BeforeProduction => 0,
            Class::Version(Some(i)) => i + 1,
            Class::Version(None) => versions.len() + 1,
            Class::Failed => versions.len() + 2,
        };
        counts[b][column] += 1;
    }
    let peak = counts
        .iter()
        .map(|b| b.iter().sum::<u32>())
        .max()
        .unwrap_or(0)
        .max(1);
    let base = chart_top + REQUESTS_H;
    c.out.push_str(r#"<g id="requests">"#);
    let _ = write!(
        c.out,
        r##"<rect x="{LEFT}" y="{chart_top:.1}" width="{plot_w:.1}" height="{REQUESTS_H}" fill="#f8fafc"/>"##
    );
    let before_end = up.unwrap_or(total);
    if before_end > Duration::ZERO {
        let w = x(before_end) - LEFT;
        let _ = write!(
            c.out,
            r##"<rect id="before-production" x="{LEFT}" y="{chart_top:.1}" width="{w:.1}" height="{REQUESTS_H}" fill="#e2e8f0"><title>before production existed: {} requests sent before production first answered ({}); not failures</title></rect>"##,
            totals.before_up,
            seconds(before_end)
        );
        let label = "before production existed";
        let text = if layout::width(label, SIZE) + 8.0 <= w {
            label
        } else {
            "before"
        };
        if layout::width(text, SIZE) + 8.0 <= w {
            c.text(
                LEFT + 4.0,
                chart_top + 14.0,
                "before-label",
                r##" fill="#334155""##,
                text,
            );
        }
    }
    let bar_w = plot_w / buckets as f64;
    let colours: Vec<&str> = std::iter::once(BEFORE)
        .chain((0..versions.len()).map(version_colour))
        .chain([UNKNOWN, FAILED])
        .collect();
    let kinds: Vec<String> = std::iter::once("before".to_string())
        .chain((0..versions.len()).map(|i| format!("v{i}")))
        .chain(["unknown".to_string(), "failed".to_string()])
        .collect();
    for (b, column) in counts.iter().enumerate() {
        let bx = LEFT + b as f64 * bar_w;
        let mut top = base;
        for (k, n) in column.iter().enumerate().filter(|(_, n)| **n > 0) {
            let h = f64::from(*n) / f64::from(peak) * (REQUESTS_H - 20.0);
            top -= h;
            let _ = write!(
                c.out,
                r#"<rect class="bar" data-class="{}" x="{bx:.1}" y="{top:.1}" width="{:.1}" height="{h:.1}" fill="{}"/>"#,
                kinds[k],
                (bar_w - 0.5).max(0.5),
                colours[k]
            );
        }
    }
    c.out.push_str("</g>");
    let anchor_end = r#" text-anchor="end""#;
    c.text(
        LEFT - 6.0,
        chart_top + 10.0,
        "axis",
        anchor_end,
        &peak.to_string(),
    );
    c.text(
        LEFT - 6.0,
        chart_top + REQUESTS_H / 2.0 + 4.0,
        "axis",
        anchor_end,
        &format!("requests/{}s", bucket_secs as u64),
    );
    c.text(LEFT - 6.0, base, "axis", anchor_end, "0");

    // Beanstalk's events: ticks, their text on hover.
    let ticks_top = base + 8.0;
    c.text(
        LEFT - 6.0,
        ticks_top + 11.0,
        "axis",
        anchor_end,
        "Beanstalk events",
    );
    c.out.push_str(r#"<g id="events">"#);
    for e in &run.events {
        let ex = x(e.at);
        let colour = match e.severity.as_str() {
            "ERROR" | "FATAL" => FAILED,
            "WARN" => "#d97706",
            _ => "#334155",
        };
        let _ = write!(
            c.out,
            r#"<g class="event-tick" data-severity="{}"><title>{} {}: {} {}</title><rect x="{:.1}" y="{ticks_top:.1}" width="6" height="14" fill="transparent"/><line x1="{ex:.1}" y1="{ticks_top:.1}" x2="{ex:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1.5"/></g>"#,
            escape(&e.severity),
            seconds(e.at),
            escape(&e.environment),
            escape(&e.severity),
            escape(&e.message),
            ex - 3.0,
            ticks_top + 14.0
        );
    }
    c.out.push_str("</g>");

    // Latency p50 and p99 per second.
    let lat_top = ticks_top + 22.0;
    let lat_base = lat_top + LATENCY_H;
    let latency = run.latency_per_second();
    let lat_max = nice_ceiling(
        latency
            .iter()
            .map(|(_, _, p99)| p99.as_secs_f64() * 1000.0)
            .fold(0.0, f64::max),
    );
    let _ = write!(
        c.out,
        r##"<g id="latency"><rect x="{LEFT}" y="{lat_top:.1}" width="{plot_w:.1}" height="{LATENCY_H}" fill="#f8fafc"/>"##
    );
    for (class, colour, pick) in [("p50", P50, 1usize), ("p99", P99, 2usize)] {
        let points: Vec<String> = latency
            .iter()
            .map(|(second, p50, p99)| {
                let v = if pick == 1 { p50 } else { p99 };
                let px = x(Duration::from_secs(*second) + Duration::from_millis(500));
                let py = lat_base - v.as_secs_f64() * 1000.0 / lat_max * (LATENCY_H - 6.0);
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let _ = write!(
            c.out,
            r#"<polyline class="{class}" points="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
            points.join(" ")
        );
    }
    c.out.push_str("</g>");
    c.text(
        LEFT - 6.0,
        lat_top + 10.0,
        "axis",
        anchor_end,
        &format!("{lat_max} ms"),
    );
    c.text(
        LEFT - 6.0,
        lat_top + LATENCY_H / 2.0 + 4.0,
        "axis",
        anchor_end,
        "latency",
    );
    c.text(LEFT - 6.0, lat_base, "axis", anchor_end, "0");

    // More series (instances per environment, ...), one small chart each.
    let mut y = lat_base + 8.0;
    for s in &run.series {
        let max = nice_ceiling(s.points.iter().map(|p| p.1).fold(0.0, f64::max));
        let bottom = y + SERIES_H;
        let mut points = vec![];
        let mut last: Option<f64> = None;
        for (t, v) in &s.points {
            let py = bottom - v / max * (SERIES_H - 6.0);
            if let Some(prev) = last {
                points.push(format!("{:.1},{prev:.1}", x(*t)));
            }
            points.push(format!("{:.1},{py:.1}", x(*t)));
            last = Some(py);
        }
        let _ = write!(
            c.out,
            r##"<g class="series" data-name="{}"><rect x="{LEFT}" y="{y:.1}" width="{plot_w:.1}" height="{SERIES_H}" fill="#f8fafc"/><polyline points="{}" fill="none" stroke="#334155" stroke-width="1.5"/></g>"##,
            escape(&s.name),
            points.join(" ")
        );
        c.text(
            LEFT - 6.0,
            y + 10.0,
            "axis",
            anchor_end,
            &format!("{max} {}", s.unit),
        );
        c.text(
            LEFT - 6.0,
            y + SERIES_H / 2.0 + 4.0,
            "axis",
            anchor_end,
            &layout::fit(&s.name, SIZE, LEFT - 12.0),
        );
        c.text(LEFT - 6.0, bottom, "axis", anchor_end, "0");
        y = bottom + 8.0;
    }

    // The time axis.
    let axis_y = y + 6.0;
    let step = time_step(total, plot_w);
    let mut ticks = vec![];
    let mut t = 0;
    while t as f64 <= total.as_secs_f64() {
        ticks.push(t);
        t += step;
    }
    c.out.push_str(r#"<g id="axis">"#);
    for t in &ticks {
        let tx = x(Duration::from_secs(*t));
        let anchor = if *t == 0 {
            ""
        } else {
            r#" text-anchor="middle""#
        };
        c.text(tx, axis_y + 6.0, "tick", anchor, &time_label(*t));
    }
    c.out.push_str("</g>");

    // One lane per action, in pipeline order; a bar per deployment, its label where it fits.
    let mut lanes: Vec<&str> = vec![];
    for d in &run.deployments {
        for a in &d.actions {
            if !lanes.contains(&a.lane.as_str()) {
                lanes.push(&a.lane);
            }
        }
    }
    let mut lane_y = axis_y + 16.0;
    let lanes_top = lane_y;
    // Drawn first, so the grid and the markers show through the lanes, under their bars and labels.
    let mut backgrounds = String::new();
    c.out.push_str(r#"<g id="lanes">"#);
    for (i, lane) in lanes.iter().enumerate() {
        let mut rows = Rows::new(8.0);
        let mut bars = String::new();
        for d in &run.deployments {
            for a in d.actions.iter().filter(|a| a.lane == *lane) {
                let (x1, x2) = (x(a.start), x(a.end).max(x(a.start) + 2.0));
                let label = bar_label(&d.label, a);
                let w = layout::width(&label, SIZE);
                let p = rows.bar(x1, x2, w, min_x, max_x);
                let top = lane_y + 3.0 + p.row as f64 * ROW_H;
                let (fill, ink) = match (a.ok, p.inside) {
                    (true, true) => ("#64748b", "#ffffff"),
                    (true, false) => ("#64748b", "#0f172a"),
                    (false, true) => (FAILED, "#ffffff"),
                    (false, false) => (FAILED, FAILED),
                };
                let mut hover = format!(
                    "{} {}: {} from {} ({} invocation{})\n{}",
                    d.label,
                    a.name,
                    seconds(a.end.saturating_sub(a.start)),
                    seconds(a.start),
                    a.invocations,
                    if a.invocations == 1 { "" } else { "s" },
                    a.summary
                );
                for (at, line) in &a.lines {
                    let _ = write!(hover, "\n{}: {line}", seconds(*at));
                }
                let _ = write!(
                    bars,
                    r#"<g class="action" data-deployment="{}" data-ok="{}"><title>{}</title><rect x="{x1:.1}" y="{top:.1}" width="{:.1}" height="{BAR_H}" fill="{fill}" rx="2"/><text x="{:.1}" y="{:.1}" class="action-label" fill="{ink}">{}</text></g>"#,
                    escape(&d.label),
                    a.ok,
                    escape(&hover),
                    x2 - x1,
                    p.text_x,
                    top + BAR_H - 2.5,
                    escape(&label)
                );
            }
        }
        let height = rows.count().max(1) as f64 * ROW_H + 6.0;
        let shade = if i % 2 == 0 { "#f1f5f9" } else { "#ffffff" };
        let _ = write!(
            backgrounds,
            r#"<rect x="0" y="{lane_y:.1}" width="{WIDTH}" height="{height:.1}" fill="{shade}"/>"#
        );
        let _ = write!(c.out, r#"<g class="lane" data-lane="{}">"#, escape(lane));
        c.text(
            8.0,
            lane_y + 3.0 + BAR_H - 2.5,
            "lane-label",
            "",
            &layout::fit(lane, SIZE, LEFT - 16.0),
        );
        c.out.push_str(&bars);
        c.out.push_str("</g>");
        lane_y += height;
    }
    c.out.push_str("</g>");
    let bottom = lane_y;

    // Grid lines at the ticks through the lanes, markers across every chart, labels above.
    let mut under = String::new();
    for t in &ticks {
        let tx = x(Duration::from_secs(*t));
        let _ = write!(
            under,
            r##"<line x1="{tx:.1}" y1="{lanes_top:.1}" x2="{tx:.1}" y2="{bottom:.1}" stroke="#cbd5e1" stroke-width="0.5"/>"##
        );
    }
    // A marker's line runs over the charts, and on under the lanes' bars and labels.
    let mut over = String::from(r#"<g id="marks">"#);
    for (m, p) in run.marks.iter().zip(&mark_places) {
        let mx = x(m.at);
        let ly = marks_top + p.row as f64 * 15.0 + 10.0;
        let _ = write!(
            under,
            r#"<line x1="{mx:.1}" y1="{lanes_top:.1}" x2="{mx:.1}" y2="{bottom:.1}" stroke="{}" stroke-width="1.2" stroke-dasharray="5 3"/>"#,
            m.kind.colour()
        );
        let _ = write!(
            over,
            r#"<g class="marker" data-kind="{}"><title>{} {}: {}</title><line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}" stroke="{}" stroke-width="1.2" stroke-dasharray="5 3"/><text x="{:.1}" y="{ly:.1}" class="marker-label" fill="{}">{}</text></g>"#,
            m.kind.name(),
            seconds(m.at),
            escape(&m.label),
            escape(&m.detail),
            ly + 3.0,
            axis_y - 6.0,
            m.kind.colour(),
            p.text_x,
            m.kind.colour(),
            escape(&m.label)
        );
    }
    over.push_str("</g>");
    let height = bottom + 8.0;
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="{}" font-size="{SIZE}"><rect width="100%" height="100%" fill="#ffffff"/>{backgrounds}{under}{}{over}</svg>"##,
        layout::FONT,
        c.out
    );
    (svg, height)
}

/// A bar's label: its deployment, how long it took and, for the functions, its invocations.
pub fn bar_label(deployment: &str, a: &super::Span) -> String {
    let took = seconds(a.end.saturating_sub(a.start));
    match a.invocations {
        0 => format!("{deployment} {took}"),
        1 => format!("{deployment} {took} 1 inv"),
        n => format!("{deployment} {took} {n} inv"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::fixture;

    #[test]
    fn the_title_counts_failures_as_the_run_does_and_grey_is_not_red() {
        let run = fixture();
        let out = svg(&run);
        assert!(out.starts_with("<?xml") && out.trim_end().ends_with("</svg>"));
        assert!(
            out.contains("80 while it was up, 1 failed; 20 sent before it existed"),
            "{out}"
        );
        // The 20 early requests are drawn grey, in the labelled band; one red bar for the failure.
        assert!(out.contains(r#"id="before-production""#));
        assert!(out.contains(">before production existed<"));
        assert_eq!(out.matches(r#"data-class="failed""#).count(), 1);
        assert!(out.contains(r#"data-class="before""#));
        // Both versions answered, each its colour and named by its deployment.
        assert!(out.contains("answered by #1 v1 (") && out.contains("answered by #2 v2 ("));
        assert!(out.contains(r#"data-class="v0""#) && out.contains(r#"data-class="v1""#));
        // Markers, events with their text on hover, latency, a lane per action.
        assert!(out.contains(r#"class="marker" data-kind="swap""#));
        assert!(out.contains(r#"class="marker" data-kind="termination""#));
        assert!(out.contains("<title>8.0s shop-v1: INFO terminateEnvironment is starting.</title>"));
        assert!(out.contains(r#"class="p50""#) && out.contains(r#"class="p99""#));
        assert!(out.contains(r#"data-lane="Stage""#) && out.contains(r#"data-lane="Swap""#));
        assert!(out.contains(">#2 0.6s 1 inv<"), "{out}");
    }

    #[test]
    fn axis_steps_leave_room_for_their_labels() {
        assert_eq!(time_step(Duration::from_secs(10), 1000.0), 1);
        assert_eq!(time_step(Duration::from_secs(70), 1000.0), 5);
        let long = time_step(Duration::from_secs(1800), 1000.0);
        assert!(1800 / long <= 17, "{long}");
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
