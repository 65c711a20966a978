//! The backup Lambda: builds the clients once per cold start and hands each job to the runner.

// The SDK calls nest deep futures; the default limit is too low to lay them out.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), beanswap_lambda::Error> {
    beanswap_lambda::run(backup::Backup::new).await
}
