//! The structs the shaders share with the host, as `#[repr(C)]` Pod mirrors
//! of their WGSL declarations in `shaders/layout.wgsl` and
//! `shaders/band_plan.wgsl` (a naga test below holds every size and offset to
//! the shader's).

use bytemuck::{Pod, Zeroable};
use conr_core::stats::{LogSumExp, RowOutcome, RowStats};
use conr_core::{Config, Named, Params, Pushing, Shape};

/// The uniform block of every dispatch: `struct Uniforms`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub(crate) struct Uniforms {
    pub rows: u32,
    pub dim: u32,
    pub label_dim: u32,
    pub metric: u32,
    pub row_offset: u32,
    pub row_count: u32,
    pub col_offset: u32,
    pub col_count: u32,
    pub threshold: f32,
    pub pred_threshold: f32,
    pub inv_temperature: f32,
    pub scale: f32,
    pub log_scale: f32,
    pub pushing: u32,
    pub aggregation: u32,
    pub flags: u32,
    pub reduction: u32,
    /// The padded row length of the f16 features (mixed precision only).
    pub stride: u32,
    /// The column ranges of the tile kernels.
    pub splits: u32,
    /// The rows the tile kernels own, local to the row chunk:
    /// `row_begin..min(row_end, row_count)` (a worker's rows, or all).
    pub row_begin: u32,
    pub row_end: u32,
    /// Feature ranges of the f32 logit tiles, kept (1: computed in place).
    pub depth_splits: u32,
    pub _pad1: u32,
}

pub(crate) const FLAG_PADDING: u32 = 1;
pub(crate) const FLAG_OUTER_WEIGHT: u32 = 2;
pub(crate) const FLAG_SELF_COUNT: u32 = 4;
pub(crate) const FLAG_ACCUMULATE: u32 = 8;
pub(crate) const FLAG_ETA: u32 = 16;
pub(crate) const FLAG_BAND_POSITIVES: u32 = 32;
pub(crate) const FLAG_BAND_NEGATIVES: u32 = 64;
pub(crate) const FLAG_BANDED: u32 = 128;
/// The tile kernels write per-range partial statistics and ∂z blocks (mixed
/// precision always; f32 with column ranges), which the next kernels merge.
pub(crate) const FLAG_PARTS: u32 = 256;

/// The size of [`Uniforms`] in bytes.
pub(crate) const UNIFORMS_SIZE: u64 = std::mem::size_of::<Uniforms>() as u64;

/// The shader's code of a config enum: its place in the core's name table
/// (the shader's `METRIC_*`, `PUSH_*`, ... constants follow that order).
fn code<N: Named>(value: N) -> u32 {
    N::TABLE.iter().position(|(_, v)| *v == value).unwrap_or(0) as u32
}

impl Uniforms {
    /// The block of a batch of `shape` with `params`, over every row (the
    /// chunk and ownership fields are the dispatch's to set). The config is
    /// destructured whole, so that a new knob cannot be left out.
    pub fn new(params: &Params<f32>, shape: Shape, has_eta: bool) -> Self {
        let Config {
            // In `params`, converted to f32 (with ω̂ in effect).
            threshold: _,
            pred_threshold: _,
            temperature: _,
            pushing: Pushing { kind, scale: _ },
            label_metric,
            aggregation,
            denominator_padding,
            outer_weight,
            self_in_positive_count,
            reduction,
        } = params.config;
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        let rows = shape.rows as u32;
        Self {
            rows,
            dim: shape.dim as u32,
            label_dim: shape.label_dim as u32,
            metric: code(label_metric),
            row_offset: 0,
            row_count: rows,
            col_offset: 0,
            col_count: rows,
            threshold: params.threshold,
            pred_threshold: params.pred_threshold,
            inv_temperature: params.inv_temperature,
            scale: params.scale,
            // The shader tests e <= 0 itself for linear pushing; keep the value finite.
            log_scale: if params.log_scale.is_finite() {
                params.log_scale
            } else {
                0.0
            },
            pushing: code(kind),
            aggregation: code(aggregation),
            flags: flag(denominator_padding, FLAG_PADDING)
                | flag(outer_weight, FLAG_OUTER_WEIGHT)
                | flag(self_in_positive_count, FLAG_SELF_COUNT)
                | flag(has_eta, FLAG_ETA),
            reduction: code(reduction),
            stride: 0,
            splits: 1,
            row_begin: 0,
            row_end: u32::MAX,
            depth_splits: 1,
            _pad1: 0,
        }
    }
}

/// One row's forward statistics: `struct RowStats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub(crate) struct DeviceStats {
    pub pos_max: f32,
    pub pos_sum: f32,
    pub neg_max: f32,
    pub neg_sum: f32,
    pub positive_logit_sum: f32,
    pub positives: u32,
    pub negatives: u32,
    pub _pad: u32,
}

impl DeviceStats {
    /// The core's statistics.
    pub fn stats(&self) -> RowStats<f32> {
        RowStats {
            positive: LogSumExp::from_parts(self.pos_max, self.pos_sum),
            negative: LogSumExp::from_parts(self.neg_max, self.neg_sum),
            positive_logit_sum: self.positive_logit_sum,
            positives: self.positives,
            negatives: self.negatives,
        }
    }
}

/// One row's finished outcome: `struct RowOutcome`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub(crate) struct DeviceOutcome {
    pub loss: f32,
    pub anchor: u32,
    pub contributes: u32,
    pub log_denominator: f32,
    pub log_positive_sum: f32,
    pub positive_share: f32,
    pub inv_count: f32,
    pub outer: f32,
}

impl DeviceOutcome {
    /// The shader's form of a core outcome, through its shard record (loss,
    /// anchor, |P|, |Q|, outer factor, ln D, ln Σ_P e^s, |P|/n, 1/n, aggregation).
    pub fn of(outcome: &RowOutcome<f32>) -> Self {
        let r = outcome.to_record();
        Self {
            loss: r[0],
            anchor: u32::from(outcome.anchor),
            contributes: u32::from(outcome.contributes()),
            log_denominator: r[5],
            log_positive_sum: r[6],
            positive_share: r[7],
            inv_count: r[8],
            outer: r[4],
        }
    }
}

/// The batch's loss, reduction factor and anchor count: `struct Totals`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub(crate) struct Totals {
    pub loss: f32,
    pub factor: f32,
    pub anchors: u32,
    pub _pad: u32,
}

/// One dispatch of the device's band plan: `struct PlanStep`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub(crate) struct PlanStep {
    /// Slots per side of the sort (a power of two).
    pub padded: u32,
    /// Slots per side of the runs.
    pub run_stride: u32,
    /// The bitonic stage; 0 for the first block sort.
    pub k: u32,
    /// The compare distance of a global step.
    pub j: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Where the shaders declare their shared constants and structs.
    fn layout() -> &'static str {
        crate::shaders::source("layout.wgsl").unwrap()
    }

    /// The value of the shader's `u32` or `f32` constant `name`, as naga
    /// parses it.
    fn shader_constant(module: &naga::Module, name: &str) -> f64 {
        let constant = module
            .constants
            .iter()
            .map(|(_, c)| c)
            .find(|c| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("the shader has no `{name}`"));
        match module.global_expressions[constant.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => f64::from(v),
            naga::Expression::Literal(naga::Literal::F32(v)) => f64::from(v),
            ref other => panic!("`{name}` is {other:?}"),
        }
    }

    /// Every constant the host and the shader share, the flag bits of
    /// [`Uniforms::flags`] included, has one value on both sides.
    #[test]
    fn the_shader_constants_are_the_hosts() {
        let module = naga::front::wgsl::parse_str(layout()).unwrap();
        let shared = [
            ("FLAG_PADDING", f64::from(FLAG_PADDING)),
            ("FLAG_OUTER_WEIGHT", f64::from(FLAG_OUTER_WEIGHT)),
            ("FLAG_SELF_COUNT", f64::from(FLAG_SELF_COUNT)),
            ("FLAG_ACCUMULATE", f64::from(FLAG_ACCUMULATE)),
            ("FLAG_ETA", f64::from(FLAG_ETA)),
            ("FLAG_BAND_POSITIVES", f64::from(FLAG_BAND_POSITIVES)),
            ("FLAG_BAND_NEGATIVES", f64::from(FLAG_BAND_NEGATIVES)),
            ("FLAG_BANDED", f64::from(FLAG_BANDED)),
            ("FLAG_PARTS", f64::from(FLAG_PARTS)),
            ("TILE", f64::from(crate::TILE)),
            ("SIDE", f64::from(crate::TILE_WORKGROUP[0])),
            ("LINEAR", f64::from(crate::LINEAR_WORKGROUP)),
            ("REDUCE", f64::from(crate::REDUCE_WORKGROUP)),
            ("MAX_ETA", conr_core::MAX_ETA),
            ("F32_MAX", f64::from(f32::MAX)),
            ("EPSILON", conr_core::normalize::EPSILON),
            ("LOG_WEIGHT_CEILING", conr_core::pairs::LOG_WEIGHT_CEILING),
        ];
        // Compared in f32, the shader's precision.
        for (name, host) in shared {
            assert_eq!(shader_constant(&module, name) as f32, host as f32, "{name}");
        }
        // Each flag is its own bit.
        let flags = [
            FLAG_PADDING,
            FLAG_OUTER_WEIGHT,
            FLAG_SELF_COUNT,
            FLAG_ACCUMULATE,
            FLAG_ETA,
            FLAG_BAND_POSITIVES,
            FLAG_BAND_NEGATIVES,
            FLAG_BANDED,
            FLAG_PARTS,
        ];
        let all = flags.iter().fold(0, |seen, &flag| {
            assert!(flag.is_power_of_two() && seen & flag == 0, "{flag}");
            seen | flag
        });
        assert_eq!(all.count_ones() as usize, flags.len());
    }

    /// The fields of a mirror with their Rust offsets.
    macro_rules! fields {
        ($ty:ty { $($field:ident),+ $(,)? }) => {
            (size_of::<$ty>(), vec![$((stringify!($field), offset_of!($ty, $field))),+])
        };
    }

    /// Every shared struct's size and member offsets in the WGSL, as naga lays
    /// them out, equal the Rust mirror's, member by member and by name.
    #[test]
    fn mirrors_match_the_shader_layout() {
        // The band plan's module: layout.wgsl's structs and its own PlanStep.
        let source = crate::shaders::module(crate::shaders::BAND_PLAN);
        let module = naga::front::wgsl::parse_str(&source).expect("the shader parses");
        let mirrors = [
            (
                "PlanStep",
                fields!(PlanStep {
                    padded,
                    run_stride,
                    k,
                    j
                }),
            ),
            (
                "Uniforms",
                fields!(Uniforms {
                    rows,
                    dim,
                    label_dim,
                    metric,
                    row_offset,
                    row_count,
                    col_offset,
                    col_count,
                    threshold,
                    pred_threshold,
                    inv_temperature,
                    scale,
                    log_scale,
                    pushing,
                    aggregation,
                    flags,
                    reduction,
                    stride,
                    splits,
                    row_begin,
                    row_end,
                    depth_splits,
                    _pad1,
                }),
            ),
            (
                "RowStats",
                fields!(DeviceStats {
                    pos_max,
                    pos_sum,
                    neg_max,
                    neg_sum,
                    positive_logit_sum,
                    positives,
                    negatives,
                    _pad,
                }),
            ),
            (
                "RowOutcome",
                fields!(DeviceOutcome {
                    loss,
                    anchor,
                    contributes,
                    log_denominator,
                    log_positive_sum,
                    positive_share,
                    inv_count,
                    outer,
                }),
            ),
            (
                "Totals",
                fields!(Totals {
                    loss,
                    factor,
                    anchors,
                    _pad
                }),
            ),
        ];
        for (name, (size, fields)) in mirrors {
            let (members, span) = module
                .types
                .iter()
                .find_map(|(_, ty)| match &ty.inner {
                    naga::TypeInner::Struct { members, span }
                        if ty.name.as_deref() == Some(name) =>
                    {
                        Some((members.clone(), *span))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("struct {name} is in the shader"));
            assert_eq!(span as usize, size, "{name}: size");
            let shader: Vec<(String, usize)> = members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
                .collect();
            let rust: Vec<(String, usize)> = fields
                .iter()
                .map(|&(field, offset)| (field.to_string(), offset))
                .collect();
            assert_eq!(shader, rust, "{name}: members and offsets");
        }
    }

    /// The shader's enum codes follow the core's name tables.
    #[test]
    fn enum_codes_follow_the_name_tables() {
        use conr_core::{Aggregation, LabelMetric, PushingKind, Reduction};
        for (name, constant) in [
            ("l1", "METRIC_L1"),
            ("l2", "METRIC_L2"),
            ("linf", "METRIC_LINF"),
            ("angular", "METRIC_ANGULAR"),
        ] {
            let value = code(LabelMetric::from_name(name).unwrap());
            let line = format!("const {constant}: u32 = {value}u;");
            assert!(layout().contains(&line), "{line}");
        }
        let lines = [
            format!("const PUSH_EXP: u32 = {}u;", code(PushingKind::Exp)),
            format!("const PUSH_LINEAR: u32 = {}u;", code(PushingKind::Linear)),
            format!(
                "const AGG_MEAN_OF_LOGS: u32 = {}u;",
                code(Aggregation::MeanOfLogs)
            ),
            format!("const REDUCTION_MEAN: u32 = {}u;", code(Reduction::Mean)),
            format!(
                "const REDUCTION_MEAN_ANCHORS: u32 = {}u;",
                code(Reduction::MeanAnchors)
            ),
        ];
        for line in lines {
            assert!(layout().contains(&line), "{line}");
        }
    }
}
