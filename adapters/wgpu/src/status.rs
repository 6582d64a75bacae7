//! The device's check of a batch's values: the rules of `conr_core::rules`,
//! mirrored by the `check_values` kernel into one status word.

use conr_core::Error;
use conr_core::rules::Rule;

/// Bits of a status word that hold the row; the rule's code sits above them.
const ROW_BITS: u32 = 29;

/// The most rows a batch may have on the device: each row's number fits in
/// [`ROW_BITS`] bits, and no rule and row make the word 0 (which means valid).
pub(crate) const MAX_ROWS: u64 = (1 << ROW_BITS) - 1;

/// What the device found when it checked a batch's values (the word that
/// [`GpuBuffers::status`](crate::GpuBuffers::status) receives).
///
/// The device checks every rule of [`conr_core::rules`] that the host cannot
/// check without reading the buffers, and reports the first one broken at
/// its first row, as the host would: [`Status::error`] is the same
/// [`Error`] that `conr_core::Batch` gives for the same values.
///
/// ```
/// use conr_core::Error;
/// use conr_wgpu::Status;
/// assert_eq!(Status(0).error(), None);
/// let word = Status::of(Error::NonPositiveEta { row: 3 }).unwrap();
/// assert_eq!(word.error(), Some(Error::NonPositiveEta { row: 3 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

impl Status {
    /// The error the word reports, or `None` when every rule held.
    pub fn error(self) -> Option<Error> {
        if self.0 == 0 {
            return None;
        }
        let key = !self.0;
        let row = (key & ((1 << ROW_BITS) - 1)) as usize;
        let rule = Rule::from_code(key >> ROW_BITS);
        // A code no kernel writes reads as the first rule: the values are bad either way.
        Some(rule.unwrap_or(Rule::FeaturesFinite).error(row))
    }

    /// The word a device writes for `error`, where the device checks it
    /// (the value rules of [`conr_core::rules`]); `None` for any other error.
    pub fn of(error: Error) -> Option<Self> {
        let row = match error {
            Error::NonFinite { row, .. }
            | Error::NonPositiveEta { row }
            | Error::EtaTooLarge { row }
            | Error::ZeroLengthLabel { row, .. } => row,
            _ => return None,
        };
        let rule = Rule::ALL
            .into_iter()
            .find(|rule| rule.error(row) == error)?;
        ((row as u64) < MAX_ROWS).then(|| Self(!((rule.code() << ROW_BITS) | row as u32)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shader's rule codes and row width are the core's and this file's.
    #[test]
    fn the_shader_numbers_rules_as_the_core_does() {
        let layout = crate::shaders::source("layout.wgsl").unwrap();
        let names = [
            "FEATURES_FINITE",
            "LABELS_FINITE",
            "PREDS_FINITE",
            "ETA_FINITE",
            "ETA_POSITIVE",
            "ETA_AT_MOST",
            "LABELS_NON_ZERO",
            "PREDS_NON_ZERO",
        ];
        assert_eq!(names.len(), Rule::ALL.len());
        for (rule, name) in Rule::ALL.into_iter().zip(names) {
            let line = format!("const RULE_{name}: u32 = {}u;", rule.code());
            assert!(layout.contains(&line), "{line}");
        }
        let rules = format!("const RULES: u32 = {}u;", Rule::ALL.len());
        assert!(layout.contains(&rules));
        assert!(layout.contains(&format!("const ROW_BITS: u32 = {ROW_BITS}u;")));
        let max_eta = format!("const MAX_ETA: f32 = {:e};", conr_core::MAX_ETA);
        assert!(layout.contains(&max_eta), "{max_eta}");
    }

    #[test]
    fn words_round_trip_and_the_first_rule_has_the_largest_word() {
        for rule in Rule::ALL {
            for row in [0, 1, 77, MAX_ROWS as usize - 1] {
                let word = Status::of(rule.error(row)).unwrap();
                assert_eq!(word.error(), Some(rule.error(row)));
            }
        }
        // The kernel keeps the largest word: the earliest rule, then the earliest row.
        let first = Status::of(Rule::FeaturesFinite.error(9)).unwrap();
        let later = Status::of(Rule::LabelsFinite.error(0)).unwrap();
        let lower = Status::of(Rule::FeaturesFinite.error(10)).unwrap();
        assert!(first.0 > later.0 && first.0 > lower.0);
        assert_eq!(Status::of(Error::EmptyBatch), None);
        assert_eq!(
            Status::of(Rule::PredsNonZero.error(MAX_ROWS as usize)),
            None
        );
    }
}
