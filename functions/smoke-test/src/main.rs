//! smoke-test: checks the staged environment over HTTP before anyone approves the swap (see lib.rs).

#[tokio::main]
async fn main() -> Result<(), beanswap_lambda::Error> {
    beanswap_lambda::run(smoke_test::SmokeTest::new).await
}
