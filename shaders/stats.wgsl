// requires: layout.wgsl
//
// conr_core::stats in f32: the online log-sum-exp of a row, its outcome, and
// each pair's coefficient in the backward pass.

// conr_core::stats::LogSumExp::push.
fn lse_push(acc: Lse, x: f32) -> Lse {
    if (acc.sum == 0.0) {
        return Lse(x, 1.0);
    }
    if (x > acc.max) {
        return Lse(x, acc.sum * exp(acc.max - x) + 1.0);
    }
    return Lse(acc.max, acc.sum + exp(x - acc.max));
}

// conr_core::stats::LogSumExp::merge.
fn lse_merge(a: Lse, b: Lse) -> Lse {
    if (b.sum == 0.0) {
        return a;
    }
    if (a.sum == 0.0) {
        return b;
    }
    let m = max(a.max, b.max);
    return Lse(m, a.sum * exp(a.max - m) + b.sum * exp(b.max - m));
}

fn empty_stats() -> RowStats {
    return RowStats(0.0, 0.0, 0.0, 0.0, 0.0, 0u, 0u, 0u);
}

// conr_core::stats::RowStats::push.
fn stats_push(s: RowStats, pair: Pair, logit: f32) -> RowStats {
    var out = s;
    if (pair.kind == POSITIVE) {
        let p = lse_push(Lse(s.pos_max, s.pos_sum), logit);
        out.pos_max = p.max;
        out.pos_sum = p.sum;
        out.positive_logit_sum += logit;
        out.positives += 1u;
    } else if (pair.kind == NEGATIVE) {
        out.negatives += 1u;
        if (pair.has_weight) {
            let n = lse_push(Lse(s.neg_max, s.neg_sum), logit + pair.log_weight);
            out.neg_max = n.max;
            out.neg_sum = n.sum;
        }
    }
    return out;
}

// conr_core::stats::RowStats::merge.
fn stats_merge(a: RowStats, b: RowStats) -> RowStats {
    var out = a;
    let p = lse_merge(Lse(a.pos_max, a.pos_sum), Lse(b.pos_max, b.pos_sum));
    let n = lse_merge(Lse(a.neg_max, a.neg_sum), Lse(b.neg_max, b.neg_sum));
    out.pos_max = p.max;
    out.pos_sum = p.sum;
    out.neg_max = n.max;
    out.neg_sum = n.sum;
    out.positive_logit_sum = a.positive_logit_sum + b.positive_logit_sum;
    out.positives = a.positives + b.positives;
    out.negatives = a.negatives + b.negatives;
    return out;
}

// conr_core::stats::RowStats::finish.
fn finish(s: RowStats, eta: f32) -> RowOutcome {
    var o = RowOutcome(0.0, u32(s.negatives > 0u), 0u, 0.0, 0.0, 0.0, 0.0, 1.0);
    if (has_flag(FLAG_OUTER_WEIGHT)) {
        o.outer = eta;
    }
    if (s.negatives == 0u || s.positives == 0u) {
        return o;
    }
    o.contributes = 1u;
    var d = lse_merge(Lse(s.pos_max, s.pos_sum), Lse(s.neg_max, s.neg_sum));
    if (has_flag(FLAG_PADDING)) {
        let padding = max(uniforms.rows - min(s.positives, uniforms.rows), 1u);
        d = lse_merge(d, Lse(log(f32(padding)), 1.0));
    }
    let positives = f32(s.positives);
    var count = positives;
    if (has_flag(FLAG_SELF_COUNT)) {
        count += 1.0;
    }
    o.log_denominator = d.max + log(d.sum);
    o.log_positive_sum = s.pos_max + log(s.pos_sum);
    o.positive_share = positives / count;
    o.inv_count = 1.0 / count;
    var row_loss: f32;
    if (uniforms.aggregation == AGG_MEAN_OF_LOGS) {
        let mean_logit = s.positive_logit_sum / positives;
        row_loss = o.positive_share * ((d.max - mean_logit) + log(d.sum));
    } else {
        row_loss = ((d.max - o.log_positive_sum) + log(d.sum)) + log(count);
    }
    o.loss = o.outer * row_loss;
    return o;
}

// conr_core::stats::RowOutcome::gradient then RowGrad::coefficient: G_jk.
fn coefficient(o: RowOutcome, factor: f32, pair: Pair, logit: f32) -> f32 {
    if (o.contributes == 0u || pair.kind == NEITHER) {
        return 0.0;
    }
    let c = factor * o.outer;
    var push = c;
    var pull = c;
    if (uniforms.aggregation == AGG_MEAN_OF_LOGS) {
        push = c * o.positive_share;
        pull = c * o.inv_count;
    }
    if (pair.kind == POSITIVE) {
        let softmax = push * exp(logit - o.log_denominator);
        if (uniforms.aggregation == AGG_MEAN_OF_LOGS) {
            return softmax - pull;
        }
        return softmax - pull * exp(logit - o.log_positive_sum);
    }
    if (!pair.has_weight) {
        return 0.0;
    }
    return push * exp(logit + pair.log_weight - o.log_denominator);
}

// conr_core::stats::reduction_factor.
fn reduction_factor(anchors: u32) -> f32 {
    if (uniforms.reduction == REDUCTION_MEAN) {
        return 1.0 / f32(max(uniforms.rows, 1u));
    }
    if (uniforms.reduction == REDUCTION_MEAN_ANCHORS) {
        return 1.0 / f32(max(anchors, 1u));
    }
    return 1.0;
}
