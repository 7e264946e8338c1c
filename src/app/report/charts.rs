//! The daily report's charts as inline SVG, drawn with plotters' SVG
//! backend (text as `<text>`, no font files, no script).

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 300;
const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(150, 150, 150);

/// One bar: its label, value, and the target band it is read against.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub target: Option<(f64, f64)>,
}

fn svg(
    draw: impl FnOnce(DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        if let Err(e) = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(root.clone()))
        {
            return format!("<p class=\"error\">chart failed: {}</p>", html_escape(&e));
        }
        let _ = root.present();
    }
    out
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-9);
    (lo - pad, hi + pad)
}

/// A line over time (hours of the day): the equity curve, the drawdown.
pub fn line(title: &str, unit: &str, points: &[(f64, f64)], fill_below: bool) -> String {
    let (lo, hi) = span(points.iter().map(|p| p.1).chain([0.0]));
    // The hours the day's trades span, whole hours, at least one.
    let first = points.first().map_or(0.0, |p| p.0.floor());
    let last = points.last().map_or(24.0, |p| p.0.ceil()).max(first + 1.0);
    svg(|root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(first..last, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("hour (UTC)")
            .y_desc(unit)
            .draw()
            .map_err(err)?;
        let color = if fill_below { RED } else { BLUE };
        if fill_below {
            chart
                .draw_series(
                    AreaSeries::new(points.iter().copied(), 0.0, color.mix(0.3))
                        .border_style(color),
                )
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Labels under a bar chart's segments, turned a quarter so long gate names fit.
fn label_style() -> TextStyle<'static> {
    ("sans-serif", 11)
        .into_font()
        .transform(FontTransform::Rotate90)
        .into()
}

/// A turned label is centred on its tick, half of it inside the plot:
/// non-breaking spaces as long as the label put all of it below the axis.
fn below(label: &str) -> String {
    let pad: String = std::iter::repeat_n('\u{a0}', label.chars().count() + 1).collect();
    format!("{pad}{label}")
}

/// A chart with one segment per label on x (labels turned under the axis)
/// and `y` on y: what the bar charts draw on.
fn labelled_segments<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    labels: &[String],
    y: std::ops::Range<f64>,
    unit: &str,
) -> Result<
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordi32>, RangedCoordf64>>,
    String,
> {
    let n = labels.len().max(1) as i32;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(110)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n as usize)
        .x_label_style(label_style())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels
                .get(*i as usize)
                .map(|l| below(l))
                .unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc(unit)
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Bars against their target bands (drawn as a grey band behind each bar).
pub fn bars(title: &str, unit: &str, bars: &[Bar], percent: bool) -> String {
    let scale = if percent { 100.0 } else { 1.0 };
    let (lo, hi) = span(
        bars.iter()
            .flat_map(|b| [Some(b.value), b.target.map(|t| t.0), b.target.map(|t| t.1)])
            .flatten()
            .map(|v| v * scale)
            .chain([0.0]),
    );
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    svg(|root| {
        let mut chart = labelled_segments(&root, title, &labels, lo..hi, unit)?;
        for (i, b) in bars.iter().enumerate() {
            let (left, right) = (
                SegmentValue::Exact(i as i32),
                SegmentValue::Exact(i as i32 + 1),
            );
            if let Some((t0, t1)) = b.target {
                let mut band = Rectangle::new(
                    [(left.clone(), t0 * scale), (right.clone(), t1 * scale)],
                    GREY.mix(0.25).filled(),
                );
                band.set_margin(0, 0, 2, 2);
                chart.draw_series([band]).map_err(err)?;
            }
            let on_target = b.target.is_none_or(|(t0, t1)| (t0..=t1).contains(&b.value));
            let mut bar = Rectangle::new(
                [(left, 0.0), (right, b.value * scale)],
                if on_target { GREEN } else { RED }.filled(),
            );
            bar.set_margin(0, 0, 8, 8);
            chart.draw_series([bar]).map_err(err)?;
        }
        Ok(())
    })
}

/// Two bars per label: good and bad blocks of each gate.
pub fn pairs(title: &str, pairs: &[(String, f64, f64)], names: (&str, &str)) -> String {
    let (_, hi) = span(pairs.iter().flat_map(|p| [p.1, p.2]).chain([0.0]));
    let n = pairs.len().max(1) as i32;
    let labels: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
    svg(|root| {
        let mut chart = labelled_segments(&root, title, &labels, 0f64..hi, "")?;
        for (k, (name, color)) in [(names.0, GREEN), (names.1, RED)].into_iter().enumerate() {
            let bars = pairs.iter().enumerate().map(move |(i, p)| {
                let v = if k == 0 { p.1 } else { p.2 };
                let seg = (
                    SegmentValue::Exact(i as i32),
                    SegmentValue::Exact(i as i32 + 1),
                );
                let mut bar = Rectangle::new([(seg.0, 0.0), (seg.1, v)], color.filled());
                // Good on the left half of the segment, bad on the right.
                let half = (WIDTH - 80) / (n as u32 + 1) / 2;
                if k == 0 {
                    bar.set_margin(0, 0, 4, half);
                } else {
                    bar.set_margin(0, 0, half, 4);
                }
                bar
            });
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// The reliability diagram: observed rate against mean prediction per bin,
/// with the diagonal of perfect calibration.
pub fn reliability(title: &str, points: &[(f64, f64)]) -> String {
    svg(|root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("mean predicted probability")
            .y_desc("observed rate")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                GREY.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                BLUE.stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
            .map_err(err)?;
        Ok(())
    })
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_self_contained_svg_with_their_data() {
        let line = line(
            "Equity",
            "bps",
            &[(0.5, 10.0), (3.0, -4.0), (9.0, 22.5)],
            false,
        );
        assert!(
            line.starts_with("<svg") && line.contains("<polyline"),
            "{line}"
        );
        let bars = bars(
            "Win rate",
            "%",
            &[Bar {
                label: "scalp".into(),
                value: 0.6,
                target: Some((0.55, 0.7)),
            }],
            true,
        );
        assert!(bars.contains("<rect") && bars.contains("scalp"), "{bars}");
        for svg in [&line, &bars] {
            assert!(
                !svg.contains("http://") || !svg.contains("href"),
                "no external reference"
            );
            assert!(!svg.contains("<script"));
        }
    }
}
