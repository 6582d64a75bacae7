//! Every engine held to the reference, one test binary (each links the
//! engines once): bad inputs, the fixtures of ConR and of the companion
//! losses, random batches and properties, the data-parallel protocol, and
//! the fuzz targets' stable replay, and the core's libm in every build graph.

mod bad_inputs;
mod dir_engines;
mod dir_fixtures;
mod dir_properties;
mod engines;
mod fds_fixtures;
mod fds_properties;
mod fixtures;
mod fuzz_smoke;
mod kept_pairs;
mod label_scale;
mod libm_bits;
mod properties;
mod sharded;
mod wide_rows;
