//! package: the build output artifact becomes an Elastic Beanstalk application version (see the crate's
//! library for the action and its UserParameters).

#[tokio::main]
async fn main() -> Result<(), beanswap_lambda::Error> {
    beanswap_lambda::run(package::Package::new).await
}
