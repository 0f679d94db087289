//! The progress bar on stderr (hidden when stderr is not a terminal, or with --quiet).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::Progress;

pub struct Bar {
    pb: ProgressBar,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(5)
        };
        Bar {
            pb: ProgressBar::with_draw_target(Some(0), target),
        }
    }

    fn style(&self, template: &str) {
        if let Ok(s) = ProgressStyle::with_template(template) {
            self.pb.set_style(s.progress_chars("=> "));
        }
    }

    pub fn connecting(&self, total: usize) {
        self.style("{prefix:>10} [{bar:30}] {pos}/{len} connections {msg}");
        self.pb.set_prefix("connecting");
        self.pb.set_length(total as u64);
        self.pb.set_position(0);
    }

    pub fn running(&self, duration: Duration) {
        self.style("{prefix:>10} [{bar:30}] {elapsed} {msg}");
        self.pb.set_prefix("running");
        self.pb.set_length(duration.as_millis() as u64);
        self.pb.reset_elapsed();
        self.pb.set_position(0);
    }

    pub fn draining(&self) {
        self.pb.set_prefix("draining");
    }

    pub fn update_connecting(&self, p: &Progress) {
        self.pb.set_position(p.connected + p.connect_failed);
        if p.connect_failed > 0 {
            self.pb
                .set_message(format!("({} failed)", p.connect_failed));
        }
    }

    pub fn update_running(&self, p: &Progress, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        self.pb
            .set_position((elapsed.as_millis() as u64).min(self.pb.length().unwrap_or(0)));
        self.pb.set_message(format!(
            "{} sent, {} delivered ({:.0}/s), {} errors",
            p.sent,
            p.delivered,
            p.delivered as f64 / secs,
            p.publish_errors + p.dropped + p.connect_failed
        ));
    }

    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
}
