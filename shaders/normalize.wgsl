// requires: layout.wgsl rules.wgsl
//
// conr_core::normalize::normalize_backward, shared by the f32 and the mixed
// kernels.

// Row `row`'s ∂L/∂z, in place in `dz` at `base`, into ∂L/∂features: the
// projection off the row's normalised features `z_rows` at `base`, divided by
// its length (or by ε for a zero-norm row), or NaN when a rule is broken.
fn normalize_backward_row(base: u32, length: f32) {
    if (!values_obey_rules()) {
        for (var i = 0u; i < uniforms.dim; i++) {
            dz[base + i] = nan();
        }
    } else if (length > EPSILON) {
        var radial = 0.0;
        for (var i = 0u; i < uniforms.dim; i++) {
            radial += z_rows[base + i] * dz[base + i];
        }
        let inv = 1.0 / length;
        for (var i = 0u; i < uniforms.dim; i++) {
            dz[base + i] = (dz[base + i] - z_rows[base + i] * radial) * inv;
        }
    } else {
        for (var i = 0u; i < uniforms.dim; i++) {
            dz[base + i] = dz[base + i] / EPSILON;
        }
    }
}
