//! `report.html`: one self-contained page (no script, no font, no request: its Content-Security-Policy
//! forbids them all) with the run's verdict, its counts, the timeline and a summary table per
//! deployment, then every action and every Beanstalk event in folded lists.

use std::fmt::Write;

use super::svg::{timeline, version_name};
use super::{brief, escape, seconds, Run};

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 24px;
       color: #0f172a; background: #ffffff; min-width: 1220px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
p { margin: 6px 0; }
.muted { color: #64748b; }
.verdict { font-weight: bold; padding: 6px 10px; border-radius: 4px; display: inline-block; }
.pass { background: #dcfce7; color: #14532d; }
.fail { background: #fee2e2; color: #7f1d1d; }
.stats { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.stat { border: 1px solid #e2e8f0; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.stat .value { display: block; font-size: 22px; font-weight: bold; }
.stat .label { display: block; color: #475569; font-size: 12px; max-width: 220px; }
.stat.bad .value { color: #dc2626; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tfoot th, tfoot td { border-top: 2px solid #94a3b8; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
details { margin-top: 20px; }
summary { cursor: pointer; font-weight: 600; }
td.message { max-width: 720px; }
#timeline text.title { fill: #0f172a; }
#timeline text.axis, #timeline text.tick, #timeline text.legend-text { fill: #334155; }
#timeline g.event-tick:hover line, #timeline g.marker:hover line { stroke-width: 3; }
#timeline g.action:hover rect { stroke: #0f172a; }
"#;

/// The page.
pub fn html(run: &Run) -> String {
    let totals = run.totals();
    let versions = run.versions();
    let summaries: Vec<_> = (0..run.deployments.len()).map(|i| run.summary(i)).collect();
    let old_after_swap: usize = summaries.iter().filter_map(|s| s.old_after_swap).sum();
    let mut p = String::new();
    let _ = write!(
        p,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>beanswap: {title}</title>
<style>{STYLE}</style></head>
<body>
<header><h1>beanswap: {title}</h1>
<p class="muted">load probe on <code>{target}</code> · {deployments} deployment{s} · {span} in all</p>
<p id="verdict" class="verdict {class}">{verdict}</p></header>
"#,
        title = escape(&run.title),
        target = escape(&run.target),
        deployments = run.deployments.len(),
        s = if run.deployments.len() == 1 { "" } else { "s" },
        span = seconds(run.span()),
        class = if run.ok() { "pass" } else { "fail" },
        verdict = escape(&run.verdict()),
    );
    let stat = |p: &mut String, metric: &str, value: String, label: &str, bad: bool| {
        let _ = write!(
            p,
            r#"<div class="stat{}"><span class="value" data-metric="{metric}">{}</span><span class="label">{}</span></div>"#,
            if bad { " bad" } else { "" },
            escape(&value),
            escape(label)
        );
    };
    p.push_str(r#"<section class="stats" id="stats">"#);
    stat(
        &mut p,
        "requests",
        totals.requests.to_string(),
        "requests while production was up",
        false,
    );
    stat(
        &mut p,
        "failures",
        totals.failures.to_string(),
        "of them failed",
        totals.failures > 0,
    );
    stat(
        &mut p,
        "before-production",
        totals.before_up.to_string(),
        "sent before production existed (grey; not failures)",
        false,
    );
    stat(
        &mut p,
        "old-after-swap",
        old_after_swap.to_string(),
        "answered by the old version after a swap",
        false,
    );
    stat(
        &mut p,
        "max-latency",
        format!("{} ms", totals.max_latency.as_millis()),
        "slowest answer while production was up",
        false,
    );
    p.push_str("</section>\n");

    let _ = write!(
        p,
        r#"<section id="timeline-section"><h2>Timeline</h2>{}
<p class="muted">Hover a Beanstalk event's tick, a marker or an action's bar for its text. Requests are counted per
moment they were sent; grey ones went out before production first answered.</p></section>
"#,
        timeline(run).0
    );

    p.push_str(
        r#"<section><h2>Deployments</h2><table id="summary"><thead><tr><th>deployment</th><th>version</th><th class="num">requests</th><th class="num">failures</th><th class="num">before production</th><th class="num">old version after swap</th><th class="num">time to full cutover</th><th>API calls per service</th><th>result</th></tr></thead><tbody>"#,
    );
    for (d, s) in run.deployments.iter().zip(&summaries) {
        let version = match &d.version {
            Some(v) => {
                let colour = versions
                    .iter()
                    .position(|x| x == v)
                    .map_or(super::svg::UNKNOWN, super::svg::version_colour);
                format!(
                    r#"<span class="swatch" style="background:{colour}"></span><code title="{}">{}</code>"#,
                    escape(v),
                    escape(&version_name(run, v))
                )
            }
            None => r#"<span class="muted">unknown</span>"#.into(),
        };
        let (old, cutover) = match (s.old_after_swap, s.cutover) {
            (Some(old), Some(c)) => (old.to_string(), brief(c)),
            (Some(old), None) => (old.to_string(), "never".into()),
            _ if d.failure.is_some() => ("—".into(), "no swap".into()),
            _ => ("—".into(), "nothing to move".into()),
        };
        let calls = s
            .calls
            .iter()
            .map(|(k, v)| format!("{} {v}", escape(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let result = match &d.failure {
            Some(f) => format!(r#"<span class="fail">stopped: {}</span>"#, escape(f)),
            None => "reached production".into(),
        };
        let _ = write!(
            p,
            r#"<tr data-deployment="{label}"><td>{label}</td><td>{version}</td><td class="num" data-metric="requests">{}</td><td class="num" data-metric="failures">{}</td><td class="num">{}</td><td class="num" data-metric="old-after-swap">{old}</td><td class="num" data-metric="cutover">{cutover}</td><td data-metric="calls">{calls}</td><td>{result}</td></tr>"#,
            s.requests,
            s.failures,
            s.before_production,
            label = escape(&d.label),
        );
    }
    let all_calls: u64 = summaries.iter().flat_map(|s| s.calls.values()).sum();
    let _ = write!(
        p,
        r#"</tbody><tfoot><tr><th>the run</th><td></td><td class="num">{}</td><td class="num" data-metric="failures-total">{}</td><td class="num">{}</td><td class="num">{old_after_swap}</td><td></td><td>{all_calls} calls</td><td id="run-verdict" class="verdict {class}" title="{verdict}">{word}</td></tr></tfoot></table>
<p class="muted">Each deployment counts the requests sent from its start to the next one's. The swap is Beanstalk's
“Completed swapping CNAMEs” event as the run saw it (the swap action's end when production moved by Route 53), or
the new version's first answer if that came sooner; full cutover is the first answer by the new version after which
no other version answered.</p></section>
"#,
        totals.requests,
        totals.failures,
        totals.before_up,
        class = if run.ok() { "pass" } else { "fail" },
        verdict = escape(&run.verdict()),
        word = if run.ok() { "PASS" } else { "FAIL" },
    );

    let actions: usize = run.deployments.iter().map(|d| d.actions.len()).sum();
    let _ = write!(
        p,
        r#"<details id="actions"><summary>Actions ({actions})</summary><table><thead><tr><th>deployment</th><th>action</th><th class="num">start</th><th class="num">took</th><th class="num">invocations</th><th>summary</th></tr></thead><tbody>"#
    );
    for d in &run.deployments {
        for a in &d.actions {
            let _ = write!(
                p,
                r#"<tr><td>{}</td><td>{}{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="message">{}</td></tr>"#,
                escape(&d.label),
                if a.ok { "" } else { "✘ " },
                escape(&a.name),
                seconds(a.start),
                seconds(a.end.saturating_sub(a.start)),
                a.invocations,
                escape(a.summary.lines().next().unwrap_or_default())
            );
        }
    }
    p.push_str("</tbody></table></details>\n");
    let _ = write!(
        p,
        r#"<details id="events-list"><summary>Beanstalk events ({})</summary><table><thead><tr><th class="num">seen at</th><th>environment</th><th>severity</th><th>message</th></tr></thead><tbody>"#,
        run.events.len()
    );
    for e in &run.events {
        let _ = write!(
            p,
            r#"<tr><td class="num">{}</td><td>{}</td><td>{}</td><td class="message">{}</td></tr>"#,
            seconds(e.at),
            escape(&e.environment),
            escape(&e.severity),
            escape(&e.message)
        );
    }
    p.push_str("</tbody></table></details>\n");
    p.push_str(
        r#"<footer><p class="muted">Written by beanswap: one file, nothing loaded from anywhere else.</p></footer>
</body></html>
"#,
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::fixture;

    #[test]
    fn the_page_is_self_contained_and_shows_the_runs_counts() {
        let run = fixture();
        let page = html(&run);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("default-src 'none'"));
        // Nothing from elsewhere: no script, no link, no remote address.
        for banned in [
            "<script",
            "<link",
            "src=\"http",
            "href=\"http",
            "url(",
            "@import",
        ] {
            assert!(!page.contains(banned), "{banned}");
        }
        assert!(page.contains(r#"<span class="value" data-metric="failures">1</span>"#));
        assert!(page.contains(r#"data-metric="before-production">20<"#));
        assert!(page.contains(r##"<tr data-deployment="#2">"##));
        assert!(page.contains(r#"data-metric="old-after-swap">1<"#));
        assert!(page.contains(r#"data-metric="cutover">200 ms<"#));
        assert!(page.contains("ElasticBeanstalk 5, S3 2"));
        assert!(page.contains(r#"<p id="verdict" class="verdict fail">FAIL: 1 of 80"#));
        assert!(page.contains(r#"id="run-verdict" class="verdict fail" title="FAIL: 1 of 80"#));
        assert!(page.contains(r#"<svg xmlns="http://www.w3.org/2000/svg" id="timeline""#));
    }
}
