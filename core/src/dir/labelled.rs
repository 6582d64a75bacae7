//! The batch RankSim and Rank-N-Contrast read: features and labels, row by row.

use crate::rules::Rule;
use crate::{Error, Scalar, Shape};

use super::check_rows;

/// A validated batch of row-major features (M×D) and labels (M×L).
#[derive(Debug, Clone, Copy)]
pub struct LabelledFeatures<'a, T> {
    shape: Shape,
    features: &'a [T],
    labels: &'a [T],
}

impl<'a, T: Scalar> LabelledFeatures<'a, T> {
    /// Validates the shape, the lengths and that every value is finite.
    pub fn new(shape: Shape, features: &'a [T], labels: &'a [T]) -> Result<Self, Error> {
        shape.validate()?;
        check_rows(
            "features",
            features,
            shape.rows,
            shape.dim,
            Rule::FeaturesFinite,
        )?;
        check_rows(
            "labels",
            labels,
            shape.rows,
            shape.label_dim,
            Rule::LabelsFinite,
        )?;
        Ok(Self {
            shape,
            features,
            labels,
        })
    }

    /// The batch's sizes.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The features, M×D.
    pub fn features(&self) -> &'a [T] {
        self.features
    }

    /// The labels, M×L.
    pub fn labels(&self) -> &'a [T] {
        self.labels
    }

    /// Row `j`'s features.
    #[inline]
    pub fn feature_row(&self, j: usize) -> &'a [T] {
        let d = self.shape.dim;
        &self.features[j * d..(j + 1) * d]
    }

    /// Row `j`'s label.
    #[inline]
    pub fn label(&self, j: usize) -> &'a [T] {
        let l = self.shape.label_dim;
        &self.labels[j * l..(j + 1) * l]
    }
}
