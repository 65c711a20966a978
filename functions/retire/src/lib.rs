//! retire: being written (see its issue).
