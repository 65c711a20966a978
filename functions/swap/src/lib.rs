//! swap: being written (see its issue).
