//! The end-of-run report: an SVG timeline a person can open (requests per moment, failures in red,
//! each stage as a band, the swap marked) beside the text summary.

use std::fmt::Write;
use std::time::Duration;

use crate::probe::Sample;

/// A stage or action on the timeline.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub start: Duration,
    pub end: Duration,
    pub ok: bool,
}

/// Renders the timeline: time across, requests per bucket up; green for answered, red for failed.
pub fn svg(samples: &[Sample], spans: &[Span], marks: &[(Duration, String)]) -> String {
    let total = spans
        .iter()
        .map(|s| s.end)
        .chain(samples.iter().map(|s| s.at))
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(1));
    let (width, height, left, top, chart) = (1000.0_f64, 420.0_f64, 60.0_f64, 20.0_f64, 220.0_f64);
    let plot_w = width - left - 20.0;
    let x = |t: Duration| left + t.as_secs_f64() / total.as_secs_f64() * plot_w;
    let buckets = 200usize;
    let bucket = total.as_secs_f64() / buckets as f64;
    let mut ok = vec![0u32; buckets];
    let mut bad = vec![0u32; buckets];
    for s in samples {
        let i = ((s.at.as_secs_f64() / bucket) as usize).min(buckets - 1);
        if s.ok() {
            ok[i] += 1;
        } else {
            bad[i] += 1;
        }
    }
    let peak = ok
        .iter()
        .zip(&bad)
        .map(|(a, b)| a + b)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = write!(
        out,
        r##"<text x="{left}" y="14" font-size="13">Requests to production over the run ({} total, {} failed) — green answered, red failed</text>"##,
        samples.len(),
        samples.iter().filter(|s| !s.ok()).count()
    );
    let bar_w = plot_w / buckets as f64;
    for i in 0..buckets {
        let bx = left + i as f64 * bar_w;
        let h_ok = f64::from(ok[i]) / f64::from(peak) * chart;
        let h_bad = f64::from(bad[i]) / f64::from(peak) * chart;
        let base = top + chart;
        if ok[i] > 0 {
            let _ = write!(
                out,
                r##"<rect x="{bx:.1}" y="{:.1}" width="{bar_w:.1}" height="{h_ok:.1}" fill="#3a3"/>"##,
                base - h_ok
            );
        }
        if bad[i] > 0 {
            let _ = write!(
                out,
                r##"<rect x="{bx:.1}" y="{:.1}" width="{bar_w:.1}" height="{h_bad:.1}" fill="#d22"/>"##,
                base - h_ok - h_bad
            );
        }
    }
    let axis_y = top + chart;
    let _ = write!(
        out,
        r##"<line x1="{left}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333"/>"##,
        left + plot_w
    );
    for k in 0..=5 {
        let t = total.mul_f64(f64::from(k) / 5.0);
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}s</text>"##,
            x(t),
            axis_y + 14.0,
            t.as_secs()
        );
    }
    let _ = write!(
        out,
        r##"<text x="4" y="{:.1}">{peak}/bucket</text>"##,
        top + 10.0
    );
    for (i, span) in spans.iter().enumerate() {
        let y = axis_y + 30.0 + (i % 6) as f64 * 18.0;
        let (x1, x2) = (x(span.start), x(span.end).max(x(span.start) + 2.0));
        let fill = if span.ok { "#8ab" } else { "#e88" };
        let _ = write!(
            out,
            r##"<rect x="{x1:.1}" y="{y:.1}" width="{:.1}" height="14" fill="{fill}"/><text x="{:.1}" y="{:.1}">{} ({:.1}s)</text>"##,
            x2 - x1,
            x2 + 4.0,
            y + 11.0,
            escape(&span.name),
            (span.end.saturating_sub(span.start)).as_secs_f64()
        );
    }
    for (at, label) in marks {
        let mx = x(*at);
        let _ = write!(
            out,
            r##"<line x1="{mx:.1}" y1="{top}" x2="{mx:.1}" y2="{axis_y}" stroke="#06c" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#06c">{}</text>"##,
            mx + 3.0,
            top + 12.0,
            escape(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_requests_failures_spans_and_marks() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample {
                at: Duration::from_millis(i * 100),
                latency: Duration::from_millis(3),
                status: if i == 50 { 502 } else { 200 },
                version: None,
            })
            .collect();
        let spans = vec![Span {
            name: "Stage <blue>".into(),
            start: Duration::ZERO,
            end: Duration::from_secs(5),
            ok: true,
        }];
        let out = svg(&samples, &spans, &[(Duration::from_secs(6), "swap".into())]);
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert!(out.contains("100 total, 1 failed"));
        assert!(out.contains("#d22"), "a failure is drawn red");
        assert!(out.contains("Stage &lt;blue&gt;"));
        assert!(out.contains(">swap<"));
    }
}
