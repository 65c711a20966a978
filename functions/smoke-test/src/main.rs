//! smoke-test: checks the staged environment over HTTP before anyone approves the swap (see lib.rs).

#[tokio::main]
async fn main() -> Result<(), beanswap_core::runner::LambdaError> {
    beanswap_core::runner::run_lambda(smoke_test::SmokeTest::new).await
}
