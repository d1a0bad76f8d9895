pub mod demo;
pub mod plan;
