//! The latency distributions of every tier as an SVG: one panel per workload, the
//! empirical CDF of each tier's guest-measured latencies, in the tier's colour (plotters, SVG
//! backend only).

use plotters::prelude::*;

use crate::compare::Report;
use crate::stats::percentile_sorted;
use crate::Error;

/// Draws `report`'s latency CDFs into `path`.
pub fn write_svg(report: &Report, path: &str) -> Result<(), Error> {
    let err = |e: String| Error::Plot {
        path: path.into(),
        detail: e,
    };
    let panels: Vec<_> = crate::report::with_samples(report).collect();
    if panels.is_empty() {
        return Err(err("no workload has latency samples on every tier".into()));
    }
    let height = 320 * panels.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, w) in areas.iter().zip(panels) {
        let curves: Vec<_> = w
            .tiers
            .iter()
            .map(|t| {
                let mut v: Vec<f64> = t.latencies_ns.iter().map(|x| x / 1e3).collect();
                v.sort_by(f64::total_cmp);
                (t, v)
            })
            .collect();
        // Up to the largest p99, so one outlier does not squash the curves.
        let x_max = curves
            .iter()
            .map(|(_, v)| percentile_sorted(v, 99.0))
            .fold(f64::MIN, f64::max)
            * 1.1;
        let x_min = curves.iter().map(|(_, v)| v[0]).fold(f64::MAX, f64::min) * 0.9;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}: guest latency per {} (CDF; {} backend)",
                    w.workload.name(),
                    w.unit,
                    report.host.backend
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(x_min..x_max, 0.0..1.0)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("latency (us)")
            .y_desc("fraction <= x")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (t, data) in &curves {
            let points = cdf_points(data, x_max);
            let [r, g, b] = t.tier.colour;
            let color = RGBColor(r, g, b);
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(format!(
                    "{} (p50 {:.1} us, avg {:.1} us)",
                    t.tier.name,
                    t.latency.p50 / 1e3,
                    t.latency.avg / 1e3
                ))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// Points that draw the empirical CDF of sorted `data` up to `x_max`: at most
/// [`CDF_POINTS`] of them, evenly spaced in rank, so that the SVG stays small whatever the
/// number of samples (each point is a few bytes of path; thousands of samples would make
/// the book's plot megabytes).
fn cdf_points(data: &[f64], x_max: f64) -> Vec<(f64, f64)> {
    let n = data.len();
    let step = n.div_ceil(CDF_POINTS).max(1);
    (0..n)
        .step_by(step)
        .chain(n.checked_sub(1))
        .map(|i| (data[i], (i + 1) as f64 / n as f64))
        .filter(|(x, _)| *x <= x_max)
        .collect()
}

/// The most points a CDF curve is drawn with.
const CDF_POINTS: usize = 400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdf_is_thinned_but_keeps_its_ends() {
        let data: Vec<f64> = (0..10_000).map(f64::from).collect();
        let points = cdf_points(&data, f64::MAX);
        assert!(points.len() <= CDF_POINTS + 1, "{}", points.len());
        assert_eq!(points.first(), Some(&(0.0, 1.0 / 10_000.0)));
        assert_eq!(points.last(), Some(&(9_999.0, 1.0)));
        assert!(points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
    }
}
