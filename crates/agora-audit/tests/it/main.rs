//! The crate's integration tests, in one binary: each file a module (one link of the
//! workspace's dependencies instead of one per file).

mod classes;
mod model;
mod project;
mod suite;
