//! Text placement without a browser: how wide the pictures' monospace text is, and rows that keep labels
//! from overlapping each other and the bars they belong to. The browser test holds the result to the
//! boxes Chromium actually draws.

/// The pictures' font: monospace, so a label's width is known before a browser draws it.
pub const FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";

/// At least the width of `text` at `size` px: DejaVu Sans Mono advances 0.602 em per character
/// (Chromium draws 19 characters at 11 px in 125.8 px), other monospace fonts about as much; anything
/// outside ASCII counts a full em, as a fallback font may draw it wider.
pub fn width(text: &str, size: f64) -> f64 {
    text.chars()
        .map(|c| if c.is_ascii() { 0.62 } else { 1.0 })
        .sum::<f64>()
        * size
}

/// `text` cut to at most `max` px at `size`, marked with `..` when cut.
pub fn fit(text: &str, size: f64, max: f64) -> String {
    if width(text, size) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        if width(&format!("{out}{c}.."), size) > max {
            break;
        }
        out.push(c);
    }
    out + ".."
}

/// Rows of horizontal extents: each new extent goes in the first row where it overlaps nothing.
#[derive(Debug, Default)]
pub struct Rows {
    rows: Vec<Vec<(f64, f64)>>,
    /// Space kept between extents in a row.
    gap: f64,
}

/// Where a bar's label went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    pub row: usize,
    /// Where the label's text starts (anchored at its start).
    pub text_x: f64,
    /// Inside the bar (drawn light on it) or beside it.
    pub inside: bool,
}

impl Rows {
    pub fn new(gap: f64) -> Rows {
        Rows { rows: vec![], gap }
    }

    /// Rows in use.
    pub fn count(&self) -> usize {
        self.rows.len()
    }

    fn first_free(&self, x1: f64, x2: f64) -> usize {
        self.rows
            .iter()
            .position(|row| {
                row.iter()
                    .all(|(a, b)| x2 + self.gap <= *a || *b + self.gap <= x1)
            })
            .unwrap_or(self.rows.len())
    }

    fn take(&mut self, row: usize, x1: f64, x2: f64) {
        if row == self.rows.len() {
            self.rows.push(vec![]);
        }
        self.rows[row].push((x1, x2));
    }

    /// Places a bar from `x1` to `x2` with a label `w` px wide, within `min_x..max_x`: the label inside
    /// the bar when it fits there, else right of it, else left of it; in the lowest row where the bar and
    /// its label overlap nothing placed before (a new row when none is free).
    pub fn bar(&mut self, x1: f64, x2: f64, w: f64, min_x: f64, max_x: f64) -> Placed {
        const PAD: f64 = 4.0;
        let mut candidates: Vec<(f64, f64, Placed)> = vec![];
        let placed = |text_x, inside| Placed {
            row: 0,
            text_x,
            inside,
        };
        if x2 - x1 >= w + 2.0 * PAD {
            candidates.push((x1, x2, placed(x1 + PAD, true)));
        }
        if x2 + PAD + w <= max_x {
            candidates.push((x1, x2 + PAD + w, placed(x2 + PAD, false)));
        }
        if x1 - PAD - w >= min_x {
            candidates.push((x1 - PAD - w, x2, placed(x1 - PAD - w, false)));
        }
        if candidates.is_empty() {
            // Wider than the room on either side: from the left edge, on a row of its own if need be.
            let start = min_x.max(max_x - w).min(x1);
            candidates.push((start, x2.max(start + w), placed(start, false)));
        }
        let (x1, x2, mut best) = candidates
            .into_iter()
            .map(|(a, b, p)| {
                (
                    a,
                    b,
                    Placed {
                        row: self.first_free(a, b),
                        ..p
                    },
                )
            })
            .min_by_key(|(_, _, p)| p.row)
            .unwrap_or((x1, x2, placed(x1, false)));
        best.row = self.first_free(x1, x2);
        self.take(best.row, x1, x2);
        best
    }

    /// Places a label `w` px wide beside a line at `x` (right of it when there is room, else left).
    pub fn beside(&mut self, x: f64, w: f64, min_x: f64, max_x: f64) -> Placed {
        self.bar(x, x, w, min_x, max_x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_at_least_what_chromium_draws() {
        // Measured in Chromium 148 with DejaVu Sans Mono at 11 px: 125.84 px.
        assert!(width("#1 Stage 3 inv 4.2s", 11.0) >= 125.9);
        assert!(width("→", 11.0) >= 11.0);
        assert_eq!(fit("short", 11.0, 100.0), "short");
        let cut = fit("a very long action name indeed", 11.0, 80.0);
        assert!(cut.ends_with("..") && width(&cut, 11.0) <= 80.0, "{cut}");
    }

    #[test]
    fn labels_go_inside_long_bars_outside_short_ones_and_rows_keep_them_apart() {
        let mut rows = Rows::new(6.0);
        // Long enough for its label: inside, row 0.
        let a = rows.bar(100.0, 300.0, 50.0, 0.0, 1000.0);
        assert_eq!(
            a,
            Placed {
                row: 0,
                text_x: 104.0,
                inside: true
            }
        );
        // A short bar after it: label to its right, same row.
        let b = rows.bar(320.0, 322.0, 60.0, 0.0, 1000.0);
        assert_eq!(
            b,
            Placed {
                row: 0,
                text_x: 326.0,
                inside: false
            }
        );
        // A short bar where its label would run into b's: left of it would hit a, so a new row.
        let c = rows.bar(330.0, 331.0, 60.0, 0.0, 1000.0);
        assert_eq!((c.row, c.inside), (1, false));
        // At the right edge: the label goes left.
        let d = rows.bar(990.0, 995.0, 60.0, 0.0, 1000.0);
        assert_eq!(
            d,
            Placed {
                row: 0,
                text_x: 926.0,
                inside: false
            }
        );
        assert_eq!(rows.count(), 2);
        // No two extents in a row overlap.
        for row in &rows.rows {
            for (i, x) in row.iter().enumerate() {
                for y in &row[i + 1..] {
                    assert!(x.1 <= y.0 || y.1 <= x.0, "{x:?} {y:?}");
                }
            }
        }
    }
}
