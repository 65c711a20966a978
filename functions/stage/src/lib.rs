//! stage: being written (see its issue).
