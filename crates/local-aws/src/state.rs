//! Everything the stand-in remembers, behind one lock: requests are short and never await while holding it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::beanstalk;
use crate::codepipeline::JobResult;
use crate::lifecycle::AppProcess;

#[derive(Default, Debug)]
pub struct State {
    /// Every accepted job result, in arrival order.
    pub job_results: Vec<JobResult>,
    /// Jobs that have a final result; a second one is refused as real CodePipeline refuses it.
    pub finished_jobs: BTreeSet<String>,
    /// Calls per `Service.Operation`, counted before validation (AWS bills and throttles those too).
    pub calls: BTreeMap<String, u64>,
    pub beanstalk: beanstalk::Store,
    pub rds: crate::rds::Store,
    pub alarms: crate::cloudwatch::Alarms,
    /// An environment's instance whose deployment steps failed, and how many instances it has: the
    /// events Beanstalk emits for it follow `Instance deployment failed.`.
    pub deploy_failures: BTreeMap<String, (String, usize)>,
    /// Calls per operation since the faults were last set (throttling counts from there).
    pub fault_calls: BTreeMap<String, u64>,
    /// The identities whose policies every request is held to, once the local run registered them
    /// (`iam.rs`); none: nothing is checked.
    pub identities: crate::iam::Enforcement,
    /// Running apps by environment id, then instance id; dropping one kills it.
    pub processes: BTreeMap<String, BTreeMap<String, AppProcess>>,
    /// Environments' load balancers by environment id, while they exist; dropping one closes it.
    pub lbs: BTreeMap<String, crate::lb::Balancer>,
    /// How each environment's current deployment starts a web process, for instances added later.
    pub app_specs: BTreeMap<String, crate::lifecycle::AppSpec>,
    /// Set when the server shuts down, so no lifecycle task starts another process.
    pub stopped: bool,
}

#[derive(Clone, Default, Debug)]
pub struct Shared(Arc<Mutex<State>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving rather than cascade.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
