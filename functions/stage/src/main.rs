//! The stage Lambda: builds the clients once per cold start and hands each job to the runner.

// The SDK calls nest deep futures; the default limit is too low to lay them out.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), beanswap_core::runner::LambdaError> {
    beanswap_core::runner::run_lambda(stage::Stage::new).await
}
