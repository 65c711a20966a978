//! retire as a Lambda: see the library for the action.

#[tokio::main]
async fn main() -> Result<(), beanswap_core::runner::LambdaError> {
    beanswap_core::runner::run_lambda(retire::Retire::new).await
}
