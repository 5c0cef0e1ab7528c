#![allow(clippy::unwrap_used, clippy::expect_used)]

mod models;
mod real;
mod tiny;
