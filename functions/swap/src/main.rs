//! swap: the Lambda entry point; see the library for what it does.

// The action's future nests the SDK futures deeply; the default limit is too low to lay it out.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), beanswap_lambda::Error> {
    beanswap_lambda::run(swap::SwapAction::new).await
}
