//! check-config: the smallest real beanswap action. It validates its UserParameters, checks that the input
//! artifact is a readable zip, and reports success with what it saw. Put it first in a new pipeline to prove
//! the wiring (roles, artifact bucket, KMS key, the function itself) before any environment is touched.

#![recursion_limit = "256"]

use check_config::action;

#[tokio::main]
async fn main() -> Result<(), beanswap_lambda::Error> {
    beanswap_lambda::run(action::CheckConfig::new).await
}
