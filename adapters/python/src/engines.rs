//! The engines the package computes on, by name, built once per process.
//!
//! The fast engine runs on a thread pool of its own (never rayon's global
//! pool), of `set_num_threads` threads (every core by default), so that
//! after a `fork` the child can drop the parent's pool, whose threads it
//! does not have, and build its own. The cache is only touched with the GIL
//! held: a fork (which holds the GIL) never finds it locked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use conr_core::{FloatEngine, Named};
use conr_engines::Options;
use pyo3::prelude::*;

use crate::errors::to_py;

/// The engines built so far, by name.
static ENGINES: Mutex<Option<HashMap<String, Arc<dyn FloatEngine>>>> = Mutex::new(None);
/// The fast engine's threads; 0 means one per core.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The engine called `name` (`fast`, `reference` or `gpu`), built on first use.
pub fn engine(_py: Python<'_>, name: &str) -> PyResult<Arc<dyn FloatEngine>> {
    let mut cache = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
    let engines = cache.get_or_insert_with(HashMap::new);
    if let Some(engine) = engines.get(name) {
        return Ok(Arc::clone(engine));
    }
    let options = Options {
        threads: num_threads(),
        ..Options::default()
    };
    let engine = conr_engines::engine_with(name, &options).map_err(to_py)?;
    engines.insert(name.to_string(), Arc::clone(&engine));
    Ok(engine)
}

/// Sets the threads of the fast engine (0: one per core); the next call
/// builds its pool.
pub fn set_num_threads(_py: Python<'_>, threads: usize) {
    THREADS.store(threads, Ordering::SeqCst);
    let mut cache = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(engines) = cache.as_mut() {
        engines.retain(|name, _| {
            conr_engines::Kind::from_name(name).ok() != Some(conr_engines::Kind::Fast)
        });
    }
}

/// The threads the fast engine computes on.
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::SeqCst) {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// In a child after `fork`: forget the parent's engines without dropping
/// them (their threads and devices exist in the parent only), so that the
/// child builds its own on first use.
pub fn after_fork_in_child(_py: Python<'_>) {
    let mut cache = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(engines) = cache.take() {
        std::mem::forget(engines);
    }
}
