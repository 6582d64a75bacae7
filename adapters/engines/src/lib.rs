//! # conr-engines
//!
//! Every conr engine behind one name, as the one engine interface of the
//! core: the constructor that the command line, the benchmarks, the
//! data-parallel runner and the Python package share, so that none of them
//! re-invents the choice.
//!
//! - `reference`: [`conr_cpu::Reference`], plain loops, the oracle.
//! - `fast` (or `cpu`, the command line's name for it): [`conr_cpu::Fast`].
//! - `gpu`: `conr_wgpu::GpuConr` on the first adapter (honouring
//!   `WGPU_BACKEND`), with the `gpu` feature (on by default); it computes
//!   f64 batches rounded to f32 once, and says so through
//!   [`Engine::precision`]. `gpu@0000:01:00.0` is the same engine on the
//!   adapter at that PCI address ([`gpu_adapters`] lists them).
//!
//! ```
//! use conr_core::{Engine, Precision};
//! use conr_engines::{Options, engine, engine_with};
//!
//! let fast = engine("fast")?;
//! assert_eq!(Engine::<f64>::name(&*fast), "fast");
//! assert_eq!(Engine::<f64>::precision(&*fast), Precision::F64);
//! let two = engine_with("cpu", &Options { threads: 2, ..Options::default() })?;
//! assert_eq!(Engine::<f32>::name(&*two), "fast");
//! let err = engine_with("fast", &Options { mixed: true, ..Options::default() }).unwrap_err();
//! assert!(err.to_string().contains("mixed precision"));
//! # Ok::<(), conr_core::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The crate README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use std::sync::Arc;

use conr_core::band::TilePlan;
use conr_core::{Engine, Error, FloatEngine, Named, Precision};
use conr_cpu::{Fast, Reference};

/// The engines, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The reference engine.
    Reference,
    /// The fast CPU engine.
    Fast,
    /// The GPU engine.
    Gpu,
}

impl Named for Kind {
    const FIELD: &'static str = "engine";
    const TABLE: &'static [(&'static str, Self)] = &[
        ("reference", Kind::Reference),
        ("fast", Kind::Fast),
        ("cpu", Kind::Fast),
        ("gpu", Kind::Gpu),
    ];
    const NAMES: &'static [&'static str] = &["reference", "fast", "cpu", "gpu"];
}

/// How to build an engine. Each knob applies where the engine has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Threads of the fast engine's own pool; 0 (the default) runs it on
    /// rayon's global pool, one thread per core.
    pub threads: usize,
    /// The tiles the fast and GPU engines visit (the band by default).
    pub plan: TilePlan,
    /// The GPU's mixed precision (f16 tiles on tensor cores, f32
    /// statistics); an error for the CPU engines, and on adapters without
    /// cooperative matrices.
    pub mixed: bool,
}

/// The engine called `name`, with the default [`Options`].
pub fn engine(name: &str) -> Result<Arc<dyn FloatEngine>, Error> {
    engine_with(name, &Options::default())
}

/// The engine called `name`, built with `options`.
pub fn engine_with(name: &str, options: &Options) -> Result<Arc<dyn FloatEngine>, Error> {
    Ok(choose(name, options)?.engine)
}

/// An engine chosen by name: the handle every consumer computes with, and,
/// where the GPU engine is the one chosen, the same engine by its own type,
/// for what only it has (recording on device buffers, kernel profiles),
/// so that no caller downcasts the handle.
#[derive(Clone)]
pub struct Chosen {
    /// The engine.
    pub engine: Arc<dyn FloatEngine>,
    /// The same engine as the GPU engine, where it is that one.
    #[cfg(feature = "gpu")]
    pub gpu: Option<Arc<conr_wgpu::GpuConr>>,
}

/// The engine called `name`, built with `options`, as a [`Chosen`].
pub fn choose(name: &str, options: &Options) -> Result<Chosen, Error> {
    if let Some(address) = name.strip_prefix("gpu@") {
        return gpu_at(address, options);
    }
    let kind = Kind::from_name(name)?;
    if options.mixed && kind != Kind::Gpu {
        return Err(Error::Unsupported {
            what: "mixed precision",
            why: format!("only the gpu engine computes in mixed precision, not `{name}`"),
        });
    }
    let engine: Arc<dyn FloatEngine> = match kind {
        Kind::Reference => Arc::new(Reference),
        Kind::Fast => {
            let fast = match options.threads {
                0 => Fast::new(),
                n => Fast::with_threads(n)?,
            };
            Arc::new(fast.with_plan(options.plan))
        }
        Kind::Gpu => return gpu(options),
    };
    Ok(Chosen {
        engine,
        #[cfg(feature = "gpu")]
        gpu: None,
    })
}

#[cfg(feature = "gpu")]
fn gpu(options: &Options) -> Result<Chosen, Error> {
    chosen_gpu(
        conr_wgpu::GpuConr::with_precision(gpu_precision(options))?,
        options,
    )
}

/// The GPU engine on the adapter at PCI address `address` (`0000:01:00.0`).
#[cfg(feature = "gpu")]
fn gpu_at(address: &str, options: &Options) -> Result<Chosen, Error> {
    let parsed = conr_wgpu::PciAddress::parse(address).ok_or(Error::InvalidConfig {
        field: "engine",
        why: "gpu@ takes a PCI address, domain:bus:device.function in hex (gpu@0000:01:00.0)",
    })?;
    let gpu = conr_wgpu::GpuConr::on_pci_address(parsed, gpu_precision(options))?;
    chosen_gpu(gpu, options)
}

#[cfg(feature = "gpu")]
fn gpu_precision(options: &Options) -> Precision {
    match options.mixed {
        true => Precision::Mixed,
        false => Precision::F32,
    }
}

#[cfg(feature = "gpu")]
fn chosen_gpu(gpu: conr_wgpu::GpuConr, options: &Options) -> Result<Chosen, Error> {
    let gpu = Arc::new(gpu.with_plan(options.plan));
    Ok(Chosen {
        engine: gpu.clone(),
        gpu: Some(gpu),
    })
}

#[cfg(not(feature = "gpu"))]
fn gpu(_: &Options) -> Result<Chosen, Error> {
    Err(without_gpu())
}

#[cfg(not(feature = "gpu"))]
fn gpu_at(_: &str, _: &Options) -> Result<Chosen, Error> {
    Err(without_gpu())
}

#[cfg(not(feature = "gpu"))]
fn without_gpu() -> Error {
    Error::Unsupported {
        what: "the gpu engine",
        why: "conr-engines was built without its `gpu` feature".into(),
    }
}

/// One adapter the GPU engine can run on: its name, its kind (`DiscreteGpu`,
/// `Cpu`, ...) and where it sits on the PCI bus, if the backend says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuAdapter {
    /// The adapter's name.
    pub name: String,
    /// Its backend: `Vulkan`, `Metal`, ...
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `Cpu`, ...
    pub device_type: String,
    /// `domain:bus:device.function`, as `gpu@` takes it.
    pub pci: Option<String>,
}

/// The adapters the GPU engine can see (none without the `gpu` feature).
pub fn gpu_adapters() -> Vec<GpuAdapter> {
    #[cfg(feature = "gpu")]
    return conr_wgpu::adapters()
        .into_iter()
        .map(|a| GpuAdapter {
            name: a.name,
            backend: a.backend,
            device_type: a.device_type,
            pci: a.pci.map(|p| p.to_string()),
        })
        .collect();
    #[cfg(not(feature = "gpu"))]
    Vec::new()
}

/// The precision to give `engine` its batches in, when a caller asks for
/// `asked` (`None`: f64 where the engine computes f64 batches in f64, else
/// f32): [`Precision::F64`] or [`Precision::F32`]. Asking f64 of an engine
/// that would round it is an error, and so is asking for mixed precision,
/// which is the engine's way of computing, not a batch's type.
///
/// ```
/// use conr_core::Precision;
/// let fast = conr_engines::engine("fast")?;
/// assert_eq!(conr_engines::batch_precision(&*fast, None)?, Precision::F64);
/// assert_eq!(conr_engines::batch_precision(&*fast, Some(Precision::F32))?, Precision::F32);
/// assert!(conr_engines::batch_precision(&*fast, Some(Precision::Mixed)).is_err());
/// # Ok::<(), conr_core::Error>(())
/// ```
pub fn batch_precision(
    engine: &dyn FloatEngine,
    asked: Option<Precision>,
) -> Result<Precision, Error> {
    let native = Engine::<f64>::precision(engine);
    match asked {
        None if native == Precision::F64 => Ok(Precision::F64),
        None => Ok(Precision::F32),
        Some(Precision::F64) if native != Precision::F64 => Err(Error::Unsupported {
            what: "f64",
            why: format!(
                "the {} engine computes in {}: ask for f32",
                Engine::<f64>::name(engine),
                native.name()
            ),
        }),
        Some(Precision::Mixed) => Err(Error::InvalidConfig {
            field: "precision",
            why: "a batch is f32 or f64; mixed precision is a way the gpu engine computes",
        }),
        Some(p) => Ok(p),
    }
}
