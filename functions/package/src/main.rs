//! package: placeholder while the action is being written (see its issue).

fn main() {}
