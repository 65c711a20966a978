//! A function deployed with a Lambda timeout shorter than its `poll_seconds` still hands back a
//! continuation token in time, instead of being cut off by the deadline and failing the job.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use local_aws::beanstalk::Options;
use test_support::bed::Bed;

#[tokio::test]
async fn polling_stops_before_the_lambda_deadline_and_hands_back_a_token() {
    let bed = Bed::start(Options {
        launch_delay: Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let mut function = bed.function(Path::new(env!("CARGO_BIN_EXE_stage"))).await;
    // 17 s of Lambda time, 15 s of which stage keeps back for the report: about 2 s of polling, whatever
    // the 600 s `poll_seconds` asks for.
    function.timeout = Duration::from_secs(17);
    let params = r#"{"application":"shop","version_label":"v1","production_cname":"shop-prod","solution_stack":"64bit Amazon Linux 2023 v4.5.2 running Python 3.11","poll_seconds":600}"#;
    let event = test_support::job_event(params);
    let id = event["CodePipeline.job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    function.invoke(event).await.unwrap();
    let took = started.elapsed();
    let result = bed
        .local
        .job_results()
        .into_iter()
        .find(|r| r.job_id == id)
        .expect("stage reported the job");
    assert_eq!(
        result.operation, "PutJobSuccessResult",
        "{:?}",
        result.request
    );
    assert!(
        result.request["continuationToken"].is_string(),
        "{:?}",
        result.request
    );
    assert!(took < Duration::from_secs(12), "took {took:?}");
}
