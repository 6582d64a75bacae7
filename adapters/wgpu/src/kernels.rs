//! The compute pipelines, each with the bindings it uses: the one list the
//! bind groups are built from and the device's limits are checked against.

use crate::shaders;
use conr_core::Precision;

/// Every binding of the shaders, by its number in `@binding(n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Binding {
    Uniforms = 0,
    Features = 1,
    ZOut = 2,
    ZRows = 3,
    ZCols = 4,
    Labels = 5,
    Preds = 6,
    Eta = 7,
    Lengths = 8,
    Stats = 10,
    Outcomes = 11,
    Totals = 13,
    Dz = 15,
    Z16 = 16,
    Dz32 = 17,
    StatsPart = 18,
    BandOrder = 19,
    BandRanges = 20,
    Status = 21,
    PlanKeys = 22,
    PlanOrder = 23,
    PlanRuns = 24,
    PlanTiles = 25,
    PlanStep = 26,
    Counts = 27,
    PlanPositions = 28,
    BandPositions = 29,
    DzOut = 30,
    DzParts = 31,
    Logits = 32,
}

impl Binding {
    /// Whether the binding is a storage buffer (every one but the two uniform blocks).
    pub fn is_storage(self) -> bool {
        !matches!(self, Binding::Uniforms | Binding::PlanStep)
    }
}

/// One entry point with its bind group layout and the bindings it uses.
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: &'static [Binding],
    pub name: &'static str,
}

use Binding as B;

/// Every f32 kernel's entry point and bindings, in dispatch order.
pub(crate) const F32_KERNELS: [(&str, &[Binding]); 10] = [
    (
        "check_values",
        &[
            B::Uniforms,
            B::Features,
            B::Labels,
            B::Preds,
            B::Eta,
            B::Status,
        ],
    ),
    (
        "normalize",
        &[B::Uniforms, B::Features, B::ZOut, B::Lengths],
    ),
    (
        "row_stats_depth",
        &[B::Uniforms, B::ZRows, B::ZCols, B::Logits, B::BandOrder],
    ),
    (
        "row_stats",
        &[
            B::Uniforms,
            B::ZRows,
            B::ZCols,
            B::Labels,
            B::Preds,
            B::Eta,
            B::Stats,
            B::StatsPart,
            B::Logits,
            B::BandOrder,
            B::BandRanges,
        ],
    ),
    (
        "finish_rows",
        &[B::Uniforms, B::Eta, B::Stats, B::StatsPart, B::Outcomes],
    ),
    (
        "reduce_loss",
        &[B::Uniforms, B::Outcomes, B::Totals, B::Status],
    ),
    (
        "backward_h",
        &[
            B::Uniforms,
            B::ZRows,
            B::ZCols,
            B::Labels,
            B::Preds,
            B::Eta,
            B::Outcomes,
            B::Totals,
            B::Logits,
            B::BandOrder,
        ],
    ),
    (
        "backward",
        &[
            B::Uniforms,
            B::ZRows,
            B::ZCols,
            B::Labels,
            B::Preds,
            B::Eta,
            B::Outcomes,
            B::Totals,
            B::DzOut,
            B::Logits,
            B::BandOrder,
            B::BandRanges,
        ],
    ),
    (
        "normalize_backward",
        &[
            B::Uniforms,
            B::ZRows,
            B::Lengths,
            B::Dz,
            B::DzParts,
            B::Status,
        ],
    ),
    ("export_counts", &[B::Uniforms, B::Stats, B::Counts]),
];

/// The kernels that build the band plan on the device (`band_plan.wgsl`), in
/// dispatch order.
pub(crate) const PLAN_KERNELS: [(&str, &[Binding]); 5] = [
    (
        "plan_keys_init",
        &[
            B::Uniforms,
            B::Labels,
            B::Preds,
            B::PlanKeys,
            B::PlanOrder,
            B::PlanStep,
        ],
    ),
    ("plan_sort_block", &[B::PlanKeys, B::PlanOrder, B::PlanStep]),
    ("plan_sort_step", &[B::PlanKeys, B::PlanOrder, B::PlanStep]),
    (
        "plan_runs",
        &[
            B::Uniforms,
            B::PlanKeys,
            B::PlanRuns,
            B::PlanTiles,
            B::PlanStep,
        ],
    ),
    (
        "plan_positions",
        &[B::Uniforms, B::PlanOrder, B::PlanStep, B::PlanPositions],
    ),
];

/// The mixed-precision kernels (`conr_mixed.wgsl`).
pub(crate) const MIXED_KERNELS: [(&str, &[Binding]); 4] = [
    ("to_half", &[B::Uniforms, B::ZRows, B::Z16, B::BandOrder]),
    (
        "row_stats_mixed",
        &[
            B::Uniforms,
            B::Z16,
            B::Labels,
            B::Preds,
            B::Eta,
            B::StatsPart,
            B::BandOrder,
            B::BandRanges,
        ],
    ),
    (
        "backward_mixed",
        &[
            B::Uniforms,
            B::Z16,
            B::Dz32,
            B::Labels,
            B::Preds,
            B::Eta,
            B::Outcomes,
            B::BandOrder,
            B::BandRanges,
        ],
    ),
    (
        "normalize_backward_mixed",
        &[
            B::Uniforms,
            B::ZRows,
            B::Lengths,
            B::Totals,
            B::Dz32,
            B::Dz,
            B::Status,
            B::BandPositions,
        ],
    ),
];

/// The most storage buffers one kernel of `precision` binds: what the
/// device must allow per shader stage.
pub(crate) fn storage_buffers_needed(precision: Precision) -> u32 {
    let mixed: &[(&str, &[Binding])] = match precision {
        Precision::Mixed => &MIXED_KERNELS,
        _ => &[],
    };
    F32_KERNELS
        .iter()
        .chain(&PLAN_KERNELS)
        .chain(mixed)
        .map(|(_, bindings)| bindings.iter().filter(|b| b.is_storage()).count() as u32)
        .max()
        .unwrap_or(0)
}

/// Every kernel, created once per device.
pub(crate) struct Pipelines {
    pub check_values: Kernel,
    pub normalize: Kernel,
    pub row_stats_depth: Kernel,
    pub row_stats: Kernel,
    pub finish_rows: Kernel,
    pub reduce_loss: Kernel,
    pub backward_h: Kernel,
    pub backward: Kernel,
    pub normalize_backward: Kernel,
    pub export_counts: Kernel,
    pub plan: PlanKernels,
    pub mixed: Option<MixedKernels>,
}

/// The kernels of `shaders/band_plan.wgsl`.
pub(crate) struct PlanKernels {
    pub keys_init: Kernel,
    pub sort_block: Kernel,
    pub sort_step: Kernel,
    pub runs: Kernel,
    pub positions: Kernel,
}

/// The kernels of `shaders/conr_mixed.wgsl`.
pub(crate) struct MixedKernels {
    pub to_half: Kernel,
    pub row_stats: Kernel,
    pub backward: Kernel,
    pub normalize_backward: Kernel,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device, precision: Precision) -> Self {
        let kernel = |module: &wgpu::ShaderModule,
                      (name, bindings): (&'static str, &'static [Binding])| {
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module,
                entry_point: Some(name),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            Kernel {
                pipeline,
                layout,
                bindings,
                name,
            }
        };
        let compile = |name: &'static str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(shaders::module(name).into()),
            })
        };
        let module = compile(shaders::F32);
        let [
            check_values,
            normalize,
            row_stats_depth,
            row_stats,
            finish_rows,
            reduce_loss,
            backward_h,
            backward,
            normalize_backward,
            export_counts,
        ] = F32_KERNELS.map(|k| kernel(&module, k));
        let module = compile(shaders::BAND_PLAN);
        let [keys_init, sort_block, sort_step, runs, positions] =
            PLAN_KERNELS.map(|k| kernel(&module, k));
        let plan = PlanKernels {
            keys_init,
            sort_block,
            sort_step,
            runs,
            positions,
        };
        let mixed = (precision == Precision::Mixed).then(|| {
            let module = compile(shaders::MIXED);
            let [to_half, row_stats, backward, normalize_backward] =
                MIXED_KERNELS.map(|k| kernel(&module, k));
            MixedKernels {
                to_half,
                row_stats,
                backward,
                normalize_backward,
            }
        });
        Self {
            check_values,
            normalize,
            row_stats_depth,
            row_stats,
            finish_rows,
            reduce_loss,
            backward_h,
            backward,
            normalize_backward,
            export_counts,
            plan,
            mixed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The bindings each entry point really uses (naga's analysis of its
    /// module) are exactly the ones its list names: the bind groups bind
    /// what the kernel reads, and the limit check counts what it binds.
    #[test]
    fn binding_lists_are_what_the_kernels_use() {
        type Lists = &'static [(&'static str, &'static [Binding])];
        let modules: [(&str, Lists); 3] = [
            (shaders::F32, &F32_KERNELS),
            (shaders::BAND_PLAN, &PLAN_KERNELS),
            (shaders::MIXED, &MIXED_KERNELS),
        ];
        for (file, lists) in modules {
            let source = shaders::module(file);
            let module = naga::front::wgsl::parse_str(&source).expect(file);
            let info = naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::SHADER_FLOAT16
                    | naga::valid::Capabilities::COOPERATIVE_MATRIX,
            )
            .validate(&module)
            .expect(file);
            assert_eq!(
                lists.len(),
                module.entry_points.len(),
                "every entry point of {file} is listed"
            );
            for (index, entry) in module.entry_points.iter().enumerate() {
                let (_, bindings) = lists
                    .iter()
                    .find(|(name, _)| *name == entry.name)
                    .unwrap_or_else(|| panic!("{} has a binding list", entry.name));
                let used: BTreeSet<u32> = module
                    .global_variables
                    .iter()
                    .filter(|(handle, _)| !info.get_entry_point(index)[*handle].is_empty())
                    .filter_map(|(_, var)| var.binding.as_ref().map(|b| b.binding))
                    .collect();
                let listed: BTreeSet<u32> = bindings.iter().map(|&b| b as u32).collect();
                assert_eq!(used, listed, "{}", entry.name);
            }
        }
        // backward binds eleven storage buffers.
        assert_eq!(storage_buffers_needed(Precision::F32), 11);
        assert_eq!(storage_buffers_needed(Precision::Mixed), 11);
    }
}
