//! How the CLI looks to a person: colours (only on a terminal, never with `NO_COLOR`),
//! progress bars (only when stdout is a terminal), and numbers formatted the way ping(8)
//! and iperf3 print them. Nothing here talks to the daemon.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A text attribute.
#[derive(Debug, Clone, Copy)]
pub enum Paint {
    /// Emphasis (labels, headers).
    Bold,
    /// Good news.
    Green,
    /// Bad news.
    Red,
    /// Secondary detail.
    Dim,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Bold => "1",
            Paint::Green => "32",
            Paint::Red => "31",
            Paint::Dim => "2",
        }
    }
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether to colour what goes to stdout.
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && !no_color()
}

/// Whether to colour what goes to stderr.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && !no_color()
}

/// `text` in `paint` when stdout gets colours, else unchanged.
pub fn paint(text: &str, paint: Paint) -> String {
    paint_if(color_stdout(), text, paint)
}

/// `text` in `paint` when `enabled`.
pub fn paint_if(enabled: bool, text: &str, paint: Paint) -> String {
    if enabled {
        format!("\x1b[{}m{text}\x1b[0m", paint.code())
    } else {
        text.to_owned()
    }
}

/// A spinner with `message` on stdout, or `None` when stdout is not a terminal.
pub fn spinner(message: String) -> Option<ProgressBar> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// Prints a line above a spinner, or plainly without one.
pub fn println_with(bar: Option<&ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.println(line),
        None => println!("{line}"),
    }
}

/// `3h 2m 1s`, `2m 5s`, `12s`.
pub fn human_secs(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// A round-trip time in milliseconds with ping(8)'s precision.
pub fn rtt(ms: Option<f64>) -> String {
    match ms {
        Some(ms) => format!("{ms:.3} ms"),
        None => "-".to_owned(),
    }
}

/// Three significant digits as iperf3 prints them.
fn three_digits(value: f64) -> String {
    if value < 9.995 {
        format!("{value:.2}")
    } else if value < 99.95 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// Bytes as iperf3 prints transfers: binary units, `112 MBytes`.
pub fn transfer(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["Bytes", "KBytes", "MBytes", "GBytes", "TBytes"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} Bytes");
    }
    format!("{} {}", three_digits(value), UNITS[unit])
}

/// Bits per second as iperf3 prints bitrates: decimal units, `941 Mbits/sec`.
pub fn bitrate(bits_per_sec: f64) -> String {
    const UNITS: [&str; 5] = [
        "bits/sec",
        "Kbits/sec",
        "Mbits/sec",
        "Gbits/sec",
        "Tbits/sec",
    ];
    let mut value = bits_per_sec;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{} {}", three_digits(value), UNITS[unit])
}

/// A peer as a person reads it: `luda (12D3KooW…)`, or the bare ID.
pub fn peer_label(peer_id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name} ({peer_id})"),
        None => peer_id.to_owned(),
    }
}

/// Parses `1048576`, `512K`, `100M`, `2G` (binary multiples) into bytes.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a size (try 1048576, 512K, 100M, 2G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        other => anyhow::bail!("{text:?}: unknown size unit {other:?} (use K, M or G)"),
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| anyhow::anyhow!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf_units() {
        assert_eq!(transfer(512), "512 Bytes");
        assert_eq!(transfer(112 << 20), "112 MBytes");
        assert_eq!(transfer(5 << 29), "2.50 GBytes");
        assert_eq!(bitrate(941_000_000.0), "941 Mbits/sec");
        assert_eq!(bitrate(9_450_000_000.0), "9.45 Gbits/sec");
        assert_eq!(bitrate(12.0), "12.0 bits/sec");
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(parse_size("1048576").expect("size"), 1 << 20);
        assert_eq!(parse_size("512K").expect("size"), 512 << 10);
        assert_eq!(parse_size("100M").expect("size"), 100 << 20);
        assert_eq!(parse_size("2g").expect("size"), 2 << 30);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3T").is_err());
        assert_eq!(human_secs(5), "5s");
        assert_eq!(human_secs(125), "2m 5s");
        assert_eq!(human_secs(3725), "1h 2m 5s");
        assert_eq!(rtt(Some(0.2134)), "0.213 ms");
        assert_eq!(paint_if(false, "x", Paint::Red), "x");
        assert_eq!(paint_if(true, "x", Paint::Red), "\x1b[31mx\x1b[0m");
    }
}
