//! stage: being written (see its issue).

fn main() {}
