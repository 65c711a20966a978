//! retire as a Lambda: see the library for the action.

#[tokio::main]
async fn main() -> Result<(), beanswap_lambda::Error> {
    beanswap_lambda::run(retire::Retire::new).await
}
