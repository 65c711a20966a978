//! Capacity before the move: a live environment that Auto Scaling grew under load has more instances
//! than a fresh clone, which starts at MinSize. Before production moves, swap makes the staged
//! environment run at least as many healthy instances as the live one runs now (raising its MinSize,
//! `aws:autoscaling:asg`), and restores the configured MinSize once production settled (after the bake).
//! Pure: what to raise to, from what both environments show.

use serde::{Deserialize, Serialize};

/// The Auto Scaling namespace and options (EB DG: "General options for all environments").
pub const ASG_NAMESPACE: &str = "aws:autoscaling:asg";
/// Beanstalk's defaults for a load-balanced environment when the options are unset (same page).
pub const DEFAULT_MIN: u32 = 1;
pub const DEFAULT_MAX: u32 = 4;

/// What an environment runs now, and its configured bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Instances running (DescribeInstancesHealth lists every one).
    pub instances: u32,
    /// Of those, the ones enhanced health calls Green.
    pub healthy: u32,
    pub min: u32,
    pub max: u32,
}

/// The staged environment's size as swap raised it: what to restore, carried between invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raised {
    #[serde(rename = "e")]
    pub environment: String,
    /// The configured MinSize/MaxSize before the raise.
    #[serde(rename = "n")]
    pub min: u32,
    #[serde(rename = "x")]
    pub max: u32,
    /// The healthy instances the staged environment must run before the move.
    #[serde(rename = "t")]
    pub target: u32,
}

/// What the staged environment needs before production moves, given both environments now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// It already runs as many healthy instances as the live one runs.
    Enough,
    /// Raise MinSize (and MaxSize when it is lower) to `to`.
    Raise { to: u32 },
    /// Raised already: wait until `target` of its instances are healthy.
    Wait { target: u32 },
}

/// Pure: the staged environment against the live one (`raised`: what swap already asked for).
pub fn need(live: &Capacity, staged: &Capacity, raised: Option<&Raised>) -> Need {
    let target = live.instances.max(1);
    if staged.healthy >= target {
        return Need::Enough;
    }
    match raised {
        Some(r) if r.target >= target && staged.min >= target => Need::Wait { target: r.target },
        _ if staged.min >= target => Need::Wait { target },
        _ => Need::Raise { to: target },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(instances: u32, healthy: u32, min: u32, max: u32) -> Capacity {
        Capacity {
            instances,
            healthy,
            min,
            max,
        }
    }

    #[test]
    fn a_clone_smaller_than_a_grown_live_environment_is_raised_then_waited_for() {
        let live = cap(4, 4, 2, 6);
        assert_eq!(need(&live, &cap(2, 2, 2, 6), None), Need::Raise { to: 4 });
        let raised = Raised {
            environment: "b".into(),
            min: 2,
            max: 6,
            target: 4,
        };
        assert_eq!(
            need(&live, &cap(3, 2, 4, 6), Some(&raised)),
            Need::Wait { target: 4 }
        );
        assert_eq!(need(&live, &cap(4, 4, 4, 6), Some(&raised)), Need::Enough);
        // Already as large: nothing to do.
        assert_eq!(need(&live, &cap(5, 4, 2, 6), None), Need::Enough);
        // An unhealthy instance does not count.
        assert_eq!(
            need(&cap(1, 1, 1, 4), &cap(1, 0, 1, 4), None),
            Need::Wait { target: 1 }
        );
    }
}
