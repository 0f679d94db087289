//! A self-contained HTML report: the summary, latency over time, deliveries per second
//! and the latency distribution, drawn as inline SVG (no scripts, nothing fetched).

use std::fmt::Write;

use crate::report::{Report, ms};

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 45.0;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let title = format!("chat-loadtest {} — run {}", r.scenario.name(), r.run_id);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:820px}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}}\
         .ok{{color:#080}}.bad{{color:#b00}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}\
         svg{{background:#fff;border:1px solid #ddd;margin:1em 0}}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(
        out,
        "<h1>{}</h1><p class=\"{}\">{}</p>",
        esc(&title),
        if r.ok { "ok" } else { "bad" },
        if r.ok {
            "No loss, no duplicate, no failure."
        } else {
            "Problems: see the counts and errors below."
        }
    );
    out.push_str("<table>\n");
    let m = &r.messages;
    let c = &r.connections;
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    };
    row("targets", r.settings.targets.join(", "));
    row(
        "connections",
        format!(
            "{} planned, {} connected, {} failed, {} dropped",
            c.planned, c.connected, c.failed, c.dropped
        ),
    );
    row(
        "scheduled / sent / published",
        format!(
            "{} / {} / {} ({} refused)",
            m.scheduled, m.sent, m.published, m.publish_errors
        ),
    );
    row(
        "deliveries",
        format!(
            "{} of {} expected, {:.0}/s; lost {}, duplicates {}",
            m.delivered, m.expected, m.deliveries_per_sec, m.lost, m.duplicates
        ),
    );
    let l = &r.latency;
    row(
        "latency",
        format!(
            "p50 {} · p90 {} · p99 {} · p99.9 {} · max {}",
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us)
        ),
    );
    if let Some(s) = &r.server {
        if let Some(x) = s.cpu_us_per_delivery {
            row("server CPU per delivery", format!("{x:.2} µs"));
        }
        if let Some(k) = s.kib_per_connection {
            row("server RSS per connection", format!("{k:.1} KiB"));
        }
    }
    out.push_str("</table>\n");

    let secs = |f: fn(&crate::report::Second) -> u64| -> Vec<(f64, f64)> {
        r.timeline
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| (s.t as f64 + 0.5, f(s) as f64 / 1000.0))
            .collect()
    };
    if !r.timeline.is_empty() {
        let n = r.timeline.len() as f64;
        out.push_str("<h2>Latency over time</h2>\n");
        out.push_str(&chart(
            "by intended send time",
            "seconds into the run",
            "latency (ms)",
            &[
                Series {
                    name: "p50",
                    color: "#1f77b4",
                    points: secs(|s| s.p50_us),
                },
                Series {
                    name: "p99",
                    color: "#ff7f0e",
                    points: secs(|s| s.p99_us),
                },
                Series {
                    name: "max",
                    color: "#d62728",
                    points: secs(|s| s.max_us),
                },
            ],
            (0.0, n),
            &linear_ticks(0.0, n),
        ));
        out.push_str("<h2>Deliveries per second</h2>\n");
        let counts: Vec<(f64, f64)> = r
            .timeline
            .iter()
            .map(|s| (s.t as f64 + 0.5, s.received as f64))
            .collect();
        out.push_str(&chart(
            "by receive time",
            "seconds into the run",
            "deliveries",
            &[Series {
                name: "deliveries/s",
                color: "#2ca02c",
                points: counts,
            }],
            (0.0, n),
            &linear_ticks(0.0, n),
        ));
    }
    if !r.distribution.is_empty() {
        out.push_str("<h2>Latency distribution</h2>\n");
        // x = log10(1 / (1 - p)): 0 → 0 %, 1 → 90 %, 2 → 99 %, …
        let points: Vec<(f64, f64)> = r
            .distribution
            .iter()
            .map(|p| {
                let q = (p.percentile / 100.0).min(0.999_999);
                (
                    (1.0 / (1.0 - q)).log10().min(6.0),
                    p.latency_us as f64 / 1000.0,
                )
            })
            .collect();
        let ticks: Vec<(f64, String)> = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "max"]
            .iter()
            .enumerate()
            .map(|(i, l)| (i as f64, l.to_string()))
            .collect();
        out.push_str(&chart(
            "latency by percentile",
            "percentile",
            "latency (ms)",
            &[Series {
                name: "latency",
                color: "#9467bd",
                points,
            }],
            (0.0, 6.0),
            &ticks,
        ));
    }
    if !r.errors.is_empty() {
        out.push_str("<h2>Errors</h2><table>\n");
        for (e, n) in &r.errors {
            let _ = writeln!(out, "<tr><td>{n}</td><td>{}</td></tr>", esc(e));
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h2>Report</h2><pre>");
    out.push_str(&esc(
        &serde_json::to_string_pretty(&ReportWithoutPlots(r)).unwrap_or_default()
    ));
    out.push_str("</pre>\n</body></html>\n");
    out
}

/// The JSON document without the plotted arrays (they are above).
struct ReportWithoutPlots<'a>(&'a Report);

impl serde::Serialize for ReportWithoutPlots<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(self.0).map_err(serde::ser::Error::custom)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("timeline");
            o.remove("distribution");
        }
        v.serialize(s)
    }
}

fn linear_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let step = nice_step((hi - lo) / 6.0);
    let mut t = Vec::new();
    let mut x = lo;
    while x <= hi + 1e-9 {
        t.push((x, trim(x)));
        x += step;
    }
    t
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn trim(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.2}")
    }
}

fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    (x0, x1): (f64, f64),
    x_ticks: &[(f64, String)],
) -> String {
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_step = nice_step(if y_max > 0.0 { y_max / 5.0 } else { 1.0 });
    let y1 = (y_max / y_step).ceil().max(1.0) * y_step;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0).max(1e-9) * pw;
    let sy = |y: f64| TOP + ph - y / y1 * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-size=\"11\">"
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"18\" font-size=\"13\">{}</text>",
        esc(title)
    );
    // Grid and y axis.
    let mut y = 0.0;
    while y <= y1 + 1e-9 {
        let py = sy(y);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            trim(y)
        );
        y += y_step;
    }
    for (x, label) in x_ticks {
        let px = sx(*x);
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph,
            TOP + ph + 15.0,
            esc(label)
        );
    }
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        LEFT + pw / 2.0,
        H - 8.0,
        esc(x_label),
        TOP + ph / 2.0,
        esc(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if pts.len() == 1 {
            let (x, y) = ser.points[0];
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                sx(x),
                sy(y),
                ser.color
            );
        } else {
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\" points=\"{}\"/>",
                ser.color,
                pts.join(" ")
            );
        }
        let lx = LEFT + 10.0 + i as f64 * 110.0;
        let _ = writeln!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            TOP + 10.0,
            ser.color,
            lx + 16.0,
            TOP + 14.0,
            esc(ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(0.03), 0.05);
        let t = linear_ticks(0.0, 12.0);
        assert_eq!(t.first().unwrap().1, "0");
        assert_eq!(t.last().unwrap().1, "12");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }
}
