//! Byte ranges: merged, clipped, subtracted and counted (sorted, half-open).

use std::ops::Range;

/// Merges overlapping and touching ranges; drops empty ones.
pub fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// Total length.
pub fn total(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}

/// The parts of sorted, merged `ranges` inside `window`.
pub fn clip(ranges: &[Range<u64>], window: &Range<u64>) -> Vec<Range<u64>> {
    ranges
        .iter()
        .filter_map(|r| {
            let start = r.start.max(window.start);
            let end = r.end.min(window.end);
            (start < end).then_some(start..end)
        })
        .collect()
}

/// `ranges` minus `taken` (both sorted and merged).
pub fn subtract(ranges: &[Range<u64>], taken: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for range in ranges {
        let mut start = range.start;
        for cut in taken
            .iter()
            .filter(|c| c.end > range.start && c.start < range.end)
        {
            if cut.start > start {
                out.push(start..cut.start);
            }
            start = start.max(cut.end);
        }
        if start < range.end {
            out.push(start..range.end);
        }
    }
    out
}

/// The unreadable areas of the image inside the volume at `offset` of `length` bytes, as
/// volume offsets.
pub fn areas_in_volume(areas: &[Range<u64>], offset: u64, length: u64) -> Vec<Range<u64>> {
    clip(areas, &(offset..offset.saturating_add(length)))
        .into_iter()
        .map(|r| r.start - offset..r.end - offset)
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::single_range_in_vec_init,
    reason = "one-range lists read best as written"
)]
mod tests {
    use super::*;

    #[test]
    fn range_arithmetic() {
        assert_eq!(merge(vec![5..7, 0..2, 2..3, 6..9, 4..4]), [0..3, 5..9]);
        assert_eq!(total(&[0..3, 5..9]), 7);
        assert_eq!(clip(&[0..10, 20..30], &(5..25)), [5..10, 20..25]);
        assert_eq!(
            subtract(&[0..10, 20..30], &[2..4, 8..22]),
            [0..2, 4..8, 22..30]
        );
        assert_eq!(subtract(&[0..10], &[]), [0..10]);
        assert_eq!(subtract(&[0..10], &[0..10]), Vec::<Range<u64>>::new());
        assert_eq!(
            areas_in_volume(
                &[0..512, 1_048_576..1_052_672, 9_000_000..9_000_512],
                1_048_576,
                4096
            ),
            [0..4096]
        );
    }
}
