//! The timeline's markers (swap, rollback, bake, termination), read from what the Swap action reported
//! (its summaries and, for the bakes, its continuation state) and from Beanstalk's events, whose wording
//! local-aws follows.

use std::time::Duration;

use beanswap_core::outcome::decode_state;
use beanswap_core::swap::engine::State;

use super::{first_line, Deployment, Event, Mark, MarkKind, Span};

/// Beanstalk's message when a CNAME swap is done (AWS's wording, which local-aws follows).
pub(super) const CNAME_SWAPPED: &str = "Completed swapping CNAMEs";

/// Beanstalk's message when a termination begins.
pub(super) const TERMINATING: &str = "terminateEnvironment is starting";

/// How swap's reports say production went back (core::swap::engine::words::moved_back_report).
pub(super) const MOVED_BACK: &[&str] = &[
    "Swapped back",
    "Shifted all weight back",
    "Restored the previous records",
];

/// The markers: each swap (Beanstalk's CNAME swap event within the Swap action, or, when production
/// moved by Route 53, the action's end), each rollback (a second CNAME swap in one action, or a swap
/// report saying it moved back), each bake (a weighted step's, the one after the move), each termination
/// Beanstalk began.
pub fn marks(deployments: &[Deployment], events: &[Event]) -> Vec<Mark> {
    let mut out = vec![];
    for d in deployments {
        for a in d.actions.iter().filter(|a| a.name.starts_with("Swap /")) {
            // Beanstalk records a CNAME swap once for each of its two environments: events seen within
            // a second of each other are one swap.
            let mut swaps: Vec<&Event> = vec![];
            for e in events
                .iter()
                .filter(|e| e.message.starts_with(CNAME_SWAPPED))
                .filter(|e| e.at >= a.start && e.at <= a.end + Duration::from_secs(1))
            {
                if swaps
                    .last()
                    .is_none_or(|s| e.at.saturating_sub(s.at) >= Duration::from_secs(1))
                {
                    swaps.push(e);
                }
            }
            let moved_back = MOVED_BACK.iter().any(|m| a.summary.contains(m));
            let nothing_moved = a.summary.contains("nothing changed");
            let bakes = bakes(a);
            // The bake after the move proves production had moved by its first report.
            let moved_at = bakes.iter().find(|b| b.after_move).map(|b| b.at);
            match swaps.first() {
                // Events are seen when the run polls them, a moment late; a report that production
                // is baking proves it had moved by then.
                Some(e) => out.push(Mark {
                    at: bakes.first().map_or(e.at, |b| e.at.min(b.at)),
                    kind: MarkKind::Swap,
                    label: format!("swap {}", d.label),
                    detail: e.message.clone(),
                }),
                // Moved by Route 53: by the first report that it bakes (a bake that caught a breach
                // and moved production back failed the action, but production had moved), else by the
                // action's end.
                None if !nothing_moved && (a.ok || moved_at.is_some()) => out.push(Mark {
                    at: moved_at.unwrap_or(a.end),
                    kind: MarkKind::Swap,
                    label: format!("swap {}", d.label),
                    detail: first_line(&a.summary).to_string(),
                }),
                None => {}
            }
            if let Some(back) = swaps.get(1) {
                out.push(Mark {
                    at: back.at,
                    kind: MarkKind::Rollback,
                    label: format!("rollback {}", d.label),
                    detail: back.message.clone(),
                });
            } else if moved_back {
                out.push(Mark {
                    at: a.end,
                    kind: MarkKind::Rollback,
                    label: format!("rollback {}", d.label),
                    detail: first_line(&a.summary).to_string(),
                });
            }
            out.extend(bakes.into_iter().map(|b| Mark {
                at: b.at,
                kind: MarkKind::Bake,
                label: format!("bake {}", d.label),
                detail: b.detail,
            }));
        }
    }
    for e in events.iter().filter(|e| e.message.starts_with(TERMINATING)) {
        out.push(Mark {
            at: e.at,
            kind: MarkKind::Termination,
            label: format!("terminate {}", e.environment),
            detail: format!("{}: {}", e.environment, e.message),
        });
    }
    out.sort_by_key(|m| (m.at, m.kind));
    out
}

/// One bake's beginning: when, what the action reported then, and whether it is the bake after the
/// move (not a weighted step's).
struct BakeBegan {
    at: Duration,
    detail: String,
    after_move: bool,
}

/// When a swap action's bakes began, from the state it carried between invocations (not from its
/// wording): a weighted step short of 100 % bakes from the report that first carries it, the bake after
/// the move from the first report that carries it. With the progress line reported then, if any.
fn bakes(action: &Span) -> Vec<BakeBegan> {
    let mut out = vec![];
    let mut step: Option<u8> = None;
    let mut after_move = false;
    for (at, token) in &action.states {
        let Ok(state) = decode_state::<State>(token) else {
            continue;
        };
        let percent = state.shift.as_ref().map(|s| s.percent);
        let began = match (percent, &state.baking) {
            (_, Some(baking)) if !after_move => {
                after_move = true;
                Some(format!(
                    "production moved from `{}`; baking, back to it on a breach",
                    baking.from
                ))
            }
            (Some(p), None) if p < 100 && step != Some(p) => Some(format!(
                "a weighted step: {p} % on the new environment; baking"
            )),
            _ => None,
        };
        let is_after_move = state.baking.is_some();
        step = percent.or(step);
        if let Some(fallback) = began {
            let line = action
                .lines
                .iter()
                .rev()
                .find(|(t, _)| t == at)
                .map_or(fallback, |(_, l)| l.clone());
            out.push(BakeBegan {
                at: *at,
                detail: line,
                after_move: is_after_move,
            });
        }
    }
    out
}
