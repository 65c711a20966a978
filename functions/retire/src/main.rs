//! retire: being written (see its issue).

fn main() {}
