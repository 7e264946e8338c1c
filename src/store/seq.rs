//! Sets of WAL sequence numbers, kept as sorted, merged inclusive ranges.

/// A set of sequence numbers as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRanges(Vec<(u64, u64)>);

impl SeqRanges {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut set = Self::new();
        for (a, b) in ranges {
            set.insert(a, b);
        }
        set
    }

    /// Adds `from..=to` (nothing if `from > to`).
    pub fn insert(&mut self, from: u64, to: u64) {
        if from > to {
            return;
        }
        let (mut from, mut to) = (from, to);
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b.saturating_add(1) < from || to.saturating_add(1) < a {
                kept.push((a, b));
            } else {
                from = from.min(a);
                to = to.max(b);
            }
        }
        kept.push((from, to));
        kept.sort_unstable();
        self.0 = kept;
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.contains_range(seq, seq)
    }

    /// Whether every sequence of `from..=to` is in the set.
    pub fn contains_range(&self, from: u64, to: u64) -> bool {
        self.0.iter().any(|&(a, b)| a <= from && to <= b)
    }

    /// The parts of `from..=to` not in the set.
    pub fn missing_in(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = from;
        for &(a, b) in &self.0 {
            if b < at {
                continue;
            }
            if a > to {
                break;
            }
            if a > at {
                out.push((at, a - 1));
            }
            at = b.saturating_add(1);
            if at > to {
                return out;
            }
        }
        if at <= to {
            out.push((at, to));
        }
        out
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn max(&self) -> Option<u64> {
        self.0.last().map(|r| r.1)
    }

    pub fn min(&self) -> Option<u64> {
        self.0.first().map(|r| r.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_and_reports_missing() {
        let s = SeqRanges::from_ranges([(5, 7), (1, 2), (8, 9), (12, 12)]);
        assert_eq!(s.ranges(), &[(1, 2), (5, 9), (12, 12)]);
        assert!(s.contains_range(5, 9));
        assert!(!s.contains_range(2, 5));
        assert_eq!(s.missing_in(1, 13), vec![(3, 4), (10, 11), (13, 13)]);
        assert_eq!(s.missing_in(5, 9), vec![]);
    }

    proptest! {
        #[test]
        fn agrees_with_a_plain_set(ranges in prop::collection::vec((0u64..60, 0u64..6), 0..12), probe in 0u64..70, len in 0u64..10) {
            let set = SeqRanges::from_ranges(ranges.iter().map(|&(a, l)| (a, a + l)));
            let plain: std::collections::BTreeSet<u64> = ranges.iter().flat_map(|&(a, l)| a..=a + l).collect();
            prop_assert_eq!(set.contains(probe), plain.contains(&probe));
            let missing: Vec<u64> = set.missing_in(probe, probe + len).into_iter().flat_map(|(a, b)| a..=b).collect();
            let want: Vec<u64> = (probe..=probe + len).filter(|s| !plain.contains(s)).collect();
            prop_assert_eq!(missing, want);
        }
    }
}
