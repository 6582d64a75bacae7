//! `per_label_mae.svg`: per-label test MAE of each method over the training
//! label histogram, drawn with plotters.

use std::path::Path;

use plotters::prelude::*;

use super::data::LABELS;
use super::report::Report;
use super::train::Method;

/// Draws the plot into `path`.
pub fn per_label_mae(report: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (820, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_mae = report
        .per_label_mae
        .values()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b))
        .max(0.1)
        * 1.15;
    let max_count = report.train_counts.iter().copied().max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Test MAE per wine quality (bars: training wines per quality)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .right_y_label_area_size(55)
        .build_cartesian_2d(2.5f64..8.5f64, 0.0..max_mae)
        .map_err(|e| e.to_string())?
        .set_secondary_coord(2.5f64..8.5f64, 0.0..max_count);
    chart
        .configure_mesh()
        .x_desc("quality")
        .y_desc("test MAE")
        .x_labels(6)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .configure_secondary_axes()
        .y_desc("training wines")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let bars = LABELS
        .iter()
        .zip(&report.train_counts)
        .map(|(&label, &count)| {
            let x = label as f64;
            Rectangle::new(
                [(x - 0.35, 0.0), (x + 0.35, count as f64)],
                RGBColor(220, 220, 220).filled(),
            )
        });
    chart
        .draw_secondary_series(bars)
        .map_err(|e| e.to_string())?;
    // The baseline in grey, then the ConR variants.
    let colors = [
        RGBColor(90, 90, 90),
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
    ];
    let series = Method::ALL
        .iter()
        .filter_map(|m| report.per_label_mae.get_key_value(m.name()));
    for ((name, maes), color) in series.zip(colors.iter().cycle()) {
        let points: Vec<(f64, f64)> = LABELS
            .iter()
            .zip(maes)
            .map(|(&l, &m)| (l as f64, m))
            .collect();
        let style = ShapeStyle::from(*color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
