// requires: layout.wgsl
//
// conr_core::rules on the device: which rule a row breaks, and the NaN every
// output becomes when one is broken.

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// A quiet NaN: what every output becomes when the values break a rule.
fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// Whether every rule held: the outputs are meaningful.
fn values_obey_rules() -> bool {
    return atomicLoad(&status) == 0u;
}

// The first conr_core::rules::Rule that row j (row `local` of the chunk's
// features) breaks, or RULES.
fn broken_rule(local: u32, j: u32) -> u32 {
    for (var i = 0u; i < uniforms.dim; i++) {
        if (!is_finite(features[local * uniforms.dim + i])) {
            return RULE_FEATURES_FINITE;
        }
    }
    let l = uniforms.label_dim;
    var label_zero = true;
    var pred_zero = true;
    for (var i = 0u; i < l; i++) {
        if (!is_finite(labels[j * l + i])) {
            return RULE_LABELS_FINITE;
        }
        label_zero = label_zero && labels[j * l + i] == 0.0;
    }
    for (var i = 0u; i < l; i++) {
        if (!is_finite(preds[j * l + i])) {
            return RULE_PREDS_FINITE;
        }
        pred_zero = pred_zero && preds[j * l + i] == 0.0;
    }
    if (has_flag(FLAG_ETA)) {
        let eta_j = eta[j];
        if (!is_finite(eta_j)) {
            return RULE_ETA_FINITE;
        }
        if (!(eta_j > 0.0)) {
            return RULE_ETA_POSITIVE;
        }
        if (!(eta_j <= MAX_ETA)) {
            return RULE_ETA_AT_MOST;
        }
    }
    if (uniforms.metric == METRIC_ANGULAR) {
        if (label_zero) {
            return RULE_LABELS_NON_ZERO;
        }
        if (pred_zero) {
            return RULE_PREDS_NON_ZERO;
        }
    }
    return RULES;
}
