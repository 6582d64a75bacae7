//! The red wine quality data (1,599 wines, 11 physico-chemical features,
//! quality 3–8), shipped inside `linfa-datasets`, split for imbalanced
//! regression.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The quality labels that occur, in order.
pub const LABELS: [usize; 6] = [3, 4, 5, 6, 7, 8];

/// One split: standardised features (row-major, `FEATURES` wide) and labels.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Row-major features.
    pub x: Vec<f32>,
    /// Quality, as f32.
    pub y: Vec<f32>,
}

impl Split {
    /// The number of wines.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// The feature width.
pub const FEATURES: usize = 11;

/// Train, validation and test splits.
#[derive(Debug, Clone)]
pub struct Splits {
    /// For fitting.
    pub train: Split,
    /// For choosing the epoch (never the test split).
    pub val: Split,
    /// For reporting: balanced towards rare labels, as DIR test sets are.
    pub test: Split,
}

impl Splits {
    /// Training samples per quality label, in [`LABELS`] order.
    pub fn train_counts(&self) -> [usize; 6] {
        let mut counts = [0; 6];
        for &y in &self.train.y {
            if let Some(i) = LABELS.iter().position(|&l| l as f32 == y) {
                counts[i] += 1;
            }
        }
        counts
    }
}

/// Splits the data with `seed`.
///
/// The test set takes, from every quality label, 30% of its wines but at most
/// 40 (and at least one): 3, 16, 40, 40, 40 and 5 wines for qualities 3 to 8.
/// That keeps every label in the test set and weighs the rare ones far more
/// than their 0.6–1.1% share of the data, in the spirit of the balanced test
/// sets of the DIR benchmarks. Of the rest, 15% of each label (at least one)
/// is for validation and the remainder for training. Features are
/// standardised with the training mean and deviation.
pub fn load(seed: u64) -> Splits {
    let data = linfa_datasets::winequality();
    let records = &data.records;
    let targets = &data.targets;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut test_idx = Vec::new();
    let mut val_idx = Vec::new();
    let mut train_idx = Vec::new();
    for &label in &LABELS {
        let mut rows: Vec<usize> = (0..targets.len())
            .filter(|&i| targets[i] == label)
            .collect();
        rows.shuffle(&mut rng);
        let n_test = ((rows.len() as f64 * 0.3).round() as usize).clamp(1, 40);
        let n_val = (((rows.len() - n_test) as f64 * 0.15).round() as usize).max(1);
        test_idx.extend_from_slice(&rows[..n_test]);
        val_idx.extend_from_slice(&rows[n_test..n_test + n_val]);
        train_idx.extend_from_slice(&rows[n_test + n_val..]);
    }
    train_idx.shuffle(&mut rng);
    let mut mean = [0.0f64; FEATURES];
    let mut std = [0.0f64; FEATURES];
    for &i in &train_idx {
        for (f, m) in mean.iter_mut().enumerate() {
            *m += records[[i, f]] / train_idx.len() as f64;
        }
    }
    for &i in &train_idx {
        for (f, s) in std.iter_mut().enumerate() {
            *s += (records[[i, f]] - mean[f]).powi(2) / train_idx.len() as f64;
        }
    }
    let take = |idx: &[usize]| {
        let mut split = Split::default();
        for &i in idx {
            for f in 0..FEATURES {
                split
                    .x
                    .push(((records[[i, f]] - mean[f]) / std[f].sqrt().max(1e-12)) as f32);
            }
            split.y.push(targets[i] as f32);
        }
        split
    };
    Splits {
        train: take(&train_idx),
        val: take(&val_idx),
        test: take(&test_idx),
    }
}
