//! The benchmark's charts, as SVG (plotters): a line per series, either
//! axis on a log scale when its values span decades.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One line of a chart: a label and its (x, y) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// What a chart shows and how.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub log_y: bool,
}

/// Draws `series` into the SVG file `path`.
pub fn draw(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    let values = |axis: fn(&(f64, f64)) -> f64| {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(axis))
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect::<Vec<f64>>()
    };
    let xs = values(|p| p.0);
    let ys = values(|p| p.1);
    let x_max = xs.iter().copied().fold(1.0, f64::max);
    let x_min = xs.iter().copied().fold(x_max, f64::min);
    let y_max = ys.iter().copied().fold(1.0, f64::max);
    let y_min = ys.iter().copied().fold(y_max, f64::min);
    let x_range = if chart.log_x {
        x_min * 0.8..x_max * 1.25
    } else {
        0.0..x_max * 1.05
    };
    let y_range = if chart.log_y {
        (y_min * 0.7).max(0.5)..y_max * 1.6
    } else {
        0.0..y_max * 1.15
    };
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|err| anyhow!("{err}"))?;
    match (chart.log_x, chart.log_y) {
        (true, true) => plot(
            &root,
            chart,
            series,
            x_range.log_scale(),
            y_range.log_scale(),
        ),
        (true, false) => plot(&root, chart, series, x_range.log_scale(), y_range),
        (false, true) => plot(&root, chart, series, x_range, y_range.log_scale()),
        (false, false) => plot(&root, chart, series, x_range, y_range),
    }?;
    root.present().map_err(|err| anyhow!("{err}"))?;
    Ok(())
}

fn plot<X, Y>(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    chart: &Chart,
    series: &[Series],
    x: X,
    y: Y,
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut context = ChartBuilder::on(root)
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(|err| anyhow!("{err}"))?;
    context
        .configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|err| anyhow!("{err}"))?;
    for (index, line) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0 && *y > 0.0)
            .collect();
        context
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|err| anyhow!("{err}"))?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        context
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|err| anyhow!("{err}"))?;
    }
    context
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|err| anyhow!("{err}"))?;
    Ok(())
}
