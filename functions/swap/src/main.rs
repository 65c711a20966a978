//! swap: being written (see its issue).

fn main() {}
