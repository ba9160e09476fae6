//! Charts drawn on the server as SVG: no script, nothing to download,
//! readable with JavaScript off. Pure: counts in, shapes out.

/// A day of per-minute counts, drawn as an area.
#[derive(Debug, PartialEq, Eq)]
pub struct Series {
    /// The area's SVG path, in a `WIDTH` × `HEIGHT` box.
    pub path: String,
    pub total: u64,
    /// The busiest bucket, per minute (rounded up).
    pub peak_per_minute: u64,
    /// `(x, hour)` of each six-hour mark, hours in UTC.
    pub ticks: Vec<(u32, u32)>,
}

pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 120;
/// Minutes per bar of the area.
const BUCKET: i64 = 10;

/// `counts` (`(minute, n)`, minutes from the epoch) over the `minutes`
/// from `start`, in buckets of ten minutes.
pub fn series(counts: &[(i64, u64)], start: i64, minutes: i64) -> Series {
    let buckets = (minutes / BUCKET).max(1);
    let mut sums = vec![0u64; buckets as usize];
    let mut total = 0;
    for &(minute, n) in counts {
        let i = (minute - start).div_euclid(BUCKET);
        if (0..buckets).contains(&i) {
            sums[i as usize] += n;
            total += n;
        }
    }
    let max = sums.iter().copied().max().unwrap_or(0);
    let step = f64::from(WIDTH) / buckets as f64;
    let y = |n: u64| {
        if max == 0 {
            f64::from(HEIGHT)
        } else {
            f64::from(HEIGHT) - (n as f64 / max as f64) * f64::from(HEIGHT - 4)
        }
    };
    let mut path = format!("M0 {HEIGHT}");
    for (i, &n) in sums.iter().enumerate() {
        let (x0, x1) = (i as f64 * step, (i + 1) as f64 * step);
        path.push_str(&format!(" L{x0:.1} {:.1} L{x1:.1} {:.1}", y(n), y(n)));
    }
    path.push_str(&format!(" L{WIDTH} {HEIGHT} Z"));
    let ticks = (0..minutes)
        .filter(|m| (start + m).rem_euclid(360) == 0)
        .map(|m| {
            let x = (m as f64 / minutes as f64 * f64::from(WIDTH)).round() as u32;
            let hour = ((start + m).rem_euclid(1440) / 60) as u32;
            (x, hour)
        })
        .collect();
    Series {
        path,
        total,
        peak_per_minute: max.div_ceil(BUCKET as u64),
        ticks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fall_in_their_ten_minutes_and_outside_ones_are_left_out() {
        let start = 1_000 * 1440; // a midnight
        let s = series(
            &[
                (start - 1, 7),
                (start, 3),
                (start + 9, 2),
                (start + 10, 20),
                (start + 1440, 9),
            ],
            start,
            1440,
        );
        assert_eq!(s.total, 25);
        assert_eq!(s.peak_per_minute, 2, "20 in ten minutes is 2 a minute");
        assert!(s.path.starts_with("M0 120 L0.0 "), "{}", s.path);
        assert!(s.path.ends_with("L720 120 Z"));
        // Midnight, 06:00, 12:00 and 18:00.
        assert_eq!(s.ticks, vec![(0, 0), (180, 6), (360, 12), (540, 18)]);
    }

    #[test]
    fn a_quiet_day_is_a_flat_line_at_the_bottom() {
        let s = series(&[], 37, 1440);
        assert_eq!((s.total, s.peak_per_minute), (0, 0));
        assert!(!s.path.contains("NaN"));
        assert!(
            s.path
                .split(' ')
                .filter(|p| p.contains('.'))
                .all(|p| p != "NaN")
        );
        assert!(s.path.contains(" 120.0"));
        assert_eq!(s.ticks.len(), 4);
    }

    #[test]
    fn the_busiest_bucket_reaches_the_top() {
        let s = series(&[(0, 1), (10, 4)], 0, 20);
        // Two buckets: 1 and 4 of a peak of 4; 1 is a quarter of the 116
        // units above the floor.
        assert_eq!(
            s.path,
            "M0 120 L0.0 91.0 L360.0 91.0 L360.0 4.0 L720.0 4.0 L720 120 Z"
        );
    }
}
