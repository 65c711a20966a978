//! Pruning application versions: which ones may go ([`prune_plan`], from the pure `plan_pruning`) and
//! deleting one batch of them per invocation, bundle first, within a time budget, so an account at the
//! 1000-version limit is pruned over a few invocations.

use std::time::Duration;

use super::exec::{Clients, Progress, Prune, RetireError, Settings};
use super::{plan_pruning, versions_in_use, EnvFacts, PrunePlan};
use crate::beanstalk::BeanstalkApi;
use crate::clock::Clock;
use crate::route53::Route53Api;
use crate::s3::S3Api;

/// Application versions asked for per DescribeApplicationVersions call.
pub const VERSION_PAGE_SIZE: i32 = 100;
/// Versions deleted per invocation at most; the rest continue in the next one, so an account at the
/// 1000-version limit is pruned over a few invocations, each well within the function's timeout.
pub const PRUNE_BATCH: usize = 100;
/// Time one invocation spends deleting versions at most (the template gives the function 300 s).
const PRUNE_TIME_BUDGET: Duration = Duration::from_secs(120);
/// Characters of names carried in the continuation token (CodePipeline allows 2048 in all); pruned
/// labels beyond it are carried as a count only.
const NAMES_BUDGET: usize = 1800;

/// What pruning would delete now: every version of the application against the ones in use.
pub(super) async fn prune_plan<B: BeanstalkApi, R: Route53Api, S: S3Api, C: Clock>(
    clients: &Clients<B, R, S, C>,
    settings: &Settings,
    facts: &[EnvFacts],
    prune: Prune,
) -> Result<PrunePlan, RetireError> {
    let versions = clients
        .beanstalk
        .application_versions(&settings.application, VERSION_PAGE_SIZE)
        .await?;
    Ok(plan_pruning(
        &versions,
        &versions_in_use(facts),
        prune.keep,
        prune.delete_bundles,
    ))
}

/// Deletes the first [`PRUNE_BATCH`] versions of `pruning` (their bundles first), stopping early when
/// the batch takes longer than its budget; records their labels in `progress` while the continuation
/// token has room. Returns how many were deleted.
pub(super) async fn delete_versions<B: BeanstalkApi, R: Route53Api, S: S3Api, C: Clock>(
    clients: &Clients<B, R, S, C>,
    settings: &Settings,
    pruning: &PrunePlan,
    progress: &mut Progress,
) -> Result<usize, RetireError> {
    let batch_started = clients.clock.now();
    let mut deleted = 0;
    for deletion in pruning.delete.iter().take(PRUNE_BATCH) {
        // Throttled deletions can be slow: stop early and continue next time, well before the
        // function's timeout.
        if clients.clock.since(batch_started) > PRUNE_TIME_BUDGET {
            break;
        }
        if let Some((bucket, key)) = &deletion.bundle {
            // The bundle first: if that fails the version is still there to retry with.
            clients
                .s3
                .delete_object(bucket, key)
                .await
                .map_err(|e| RetireError::DeleteBundle {
                    label: deletion.label.clone(),
                    source: e.on(format!("s3://{bucket}/{key}")),
                })?;
        }
        clients
            .beanstalk
            .delete_application_version(&settings.application, &deletion.label)
            .await
            .map_err(|source| RetireError::DeleteVersion {
                label: deletion.label.clone(),
                source,
            })?;
        let listed: usize = progress
            .pruned
            .iter()
            .chain(&progress.terminated)
            .chain(&progress.scaled)
            .map(|l| l.len() + 3)
            .sum();
        if listed + deletion.label.len() + 3 < NAMES_BUDGET {
            progress.pruned.push(deletion.label.clone());
        } else {
            progress.pruned_unlisted += 1;
        }
        deleted += 1;
    }
    Ok(deleted)
}
