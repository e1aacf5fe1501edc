//! Weighted set cover, as the cover plan needs it: elements `0..n` (the missing tags), sets with a
//! cost in pages (the views), and every element also coverable alone at cost 1 (asking for the
//! tag by name). Pure and deterministic.
//!
//! Greedy (most elements per page) alone goes wrong on views that cross: a view that happens to
//! fill its pages exactly is taken first, and cuts pieces out of several others, each of which
//! then costs nearly as much for fewer tags. So the greedy plan is only the start: a Lagrangian
//! relaxation (subgradient steps on a price per element) finds which elements are cheap or dear
//! to reach, and a plan is made from the sets the prices favour (Beasley's heuristic), the best
//! plan kept. The work is bounded: [`ITERATIONS`] steps, each a few passes over the sets (some
//! 0.4 s for the 16,000 missing tags and 19,000 views of an 18,000-tag repository, on a busy
//! machine).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Subgradient steps at most.
const ITERATIONS: usize = 300;

/// A set: its cost and the elements it covers (each once).
pub(super) struct Set<'a> {
    pub(super) cost: usize,
    pub(super) elements: &'a [u32],
}

/// A cover: the sets chosen (ascending) and the elements covered alone (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cover {
    pub(super) sets: Vec<usize>,
    pub(super) alone: Vec<u32>,
}

impl Cover {
    fn cost(&self, sets: &[Set<'_>]) -> usize {
        self.sets.iter().map(|&j| sets[j].cost).sum::<usize>() + self.alone.len()
    }
}

/// The cheapest cover found of elements `0..n` by `sets` and single elements at cost 1.
pub(super) fn solve(n: usize, sets: &[Set<'_>]) -> Cover {
    let mut best = reduce(n, sets, greedy(n, sets, &[]));
    let mut upper = best.cost(sets);
    if n == 0 || sets.is_empty() {
        return best;
    }
    // Prices start at the cheapest cost per element any set offers (at most 1, the cost alone).
    let mut price = vec![1.0f64; n];
    for set in sets {
        let per = set.cost as f64 / set.elements.len().max(1) as f64;
        for &e in set.elements {
            price[e as usize] = price[e as usize].min(per);
        }
    }
    let mut step = 2.0f64;
    let mut lower_best = f64::MIN;
    let mut stale = 0;
    let mut reduced = vec![0.0f64; sets.len()];
    let mut covers = vec![0i32; n];
    for _ in 0..ITERATIONS {
        // Reduced costs, and the relaxation's value: every set of negative reduced cost taken.
        let mut lower: f64 = price.iter().map(|&p| p.min(1.0)).sum();
        for (j, set) in sets.iter().enumerate() {
            let r = set.cost as f64 - set.elements.iter().map(|&e| price[e as usize]).sum::<f64>();
            reduced[j] = r;
            lower += r.min(0.0);
        }
        if lower > lower_best + 1e-9 {
            lower_best = lower;
            stale = 0;
        } else {
            stale += 1;
            if stale >= 15 {
                step /= 2.0;
                stale = 0;
            }
        }
        // No cover costs less than the relaxation's best value: the plan in hand is optimal.
        if step < 1e-3 || (upper as f64) - lower_best < 1.0 - 1e-9 {
            break;
        }
        // A plan from the sets the prices favour, completed greedily.
        let favoured: Vec<usize> = (0..sets.len()).filter(|&j| reduced[j] < 0.0).collect();
        let cover = reduce(n, sets, greedy(n, sets, &favoured));
        let cost = cover.cost(sets);
        if cost < upper {
            upper = cost;
            best = cover;
        }
        // Subgradient: how far each element is from being covered exactly once.
        covers.iter_mut().for_each(|c| *c = 1);
        for &j in &favoured {
            for &e in sets[j].elements {
                covers[e as usize] -= 1;
            }
        }
        for (e, c) in covers.iter_mut().enumerate() {
            if price[e] > 1.0 {
                *c -= 1;
            }
        }
        let norm: f64 = covers.iter().map(|&g| f64::from(g * g)).sum();
        if norm == 0.0 {
            break;
        }
        let size = step * (upper as f64 * 1.05 - lower) / norm;
        for (p, &g) in price.iter_mut().zip(&covers) {
            *p = (*p + size * f64::from(g)).max(0.0);
        }
    }
    best
}

/// Takes `first`, then the sets covering most uncovered elements per unit of cost while that is
/// more than one per unit (covering them alone costs one each, and is exact: a tag asked for by
/// name cannot be shifted off a page by a tie).
///
/// Lazy: a set's gain only shrinks as others are taken, so a gain computed earlier bounds it; the
/// best bound is computed afresh and taken if it still beats every other bound.
fn greedy(n: usize, sets: &[Set<'_>], first: &[usize]) -> Vec<usize> {
    let mut uncovered = vec![true; n];
    let mut chosen = Vec::new();
    for &j in first {
        for &e in sets[j].elements {
            uncovered[e as usize] = false;
        }
        chosen.push(j);
    }
    let gain = |j: usize, uncovered: &[bool]| {
        sets[j]
            .elements
            .iter()
            .filter(|&&e| uncovered[e as usize])
            .count()
    };
    let mut heap: BinaryHeap<Bound> = (0..sets.len())
        .map(|at| Bound {
            gain: gain(at, &uncovered),
            cost: sets[at].cost,
            at,
        })
        .filter(|b| b.gain > b.cost)
        .collect();
    while let Some(top) = heap.pop() {
        let gain = gain(top.at, &uncovered);
        if gain <= top.cost {
            continue;
        }
        let fresh = Bound { gain, ..top };
        if heap.peek().is_some_and(|next| *next > fresh) {
            heap.push(fresh);
            continue;
        }
        for &e in sets[top.at].elements {
            uncovered[e as usize] = false;
        }
        chosen.push(top.at);
    }
    chosen
}

/// Drops chosen sets, costliest first, whose elements no other chosen set covers are no more than
/// their cost (those are then covered alone); the elements no set covers are covered alone.
fn reduce(n: usize, sets: &[Set<'_>], chosen: Vec<usize>) -> Cover {
    let mut times = vec![0u32; n];
    for &j in &chosen {
        for &e in sets[j].elements {
            times[e as usize] += 1;
        }
    }
    let mut order = chosen;
    order.sort_by_key(|&j| (Reverse(sets[j].cost), Reverse(j)));
    order.dedup();
    let mut kept = Vec::new();
    for j in order {
        let unique = sets[j]
            .elements
            .iter()
            .filter(|&&e| times[e as usize] == 1)
            .count();
        if unique <= sets[j].cost {
            for &e in sets[j].elements {
                times[e as usize] -= 1;
            }
        } else {
            kept.push(j);
        }
    }
    kept.sort_unstable();
    Cover {
        sets: kept,
        alone: (0..n as u32).filter(|&e| times[e as usize] == 0).collect(),
    }
}

/// A set's gain (uncovered elements, as last computed) for its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound {
    gain: usize,
    cost: usize,
    at: usize,
}

impl Ord for Bound {
    /// Most elements per unit of cost; then more elements; then the set listed first, so the
    /// result is deterministic.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.gain * other.cost)
            .cmp(&(other.gain * self.cost))
            .then_with(|| self.gain.cmp(&other.gain))
            .then_with(|| other.at.cmp(&self.at))
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets<'a>(table: &'a [(usize, Vec<u32>)]) -> Vec<Set<'a>> {
        table
            .iter()
            .map(|(cost, elements)| Set {
                cost: *cost,
                elements,
            })
            .collect()
    }

    /// Every element is in a chosen set or alone.
    fn covers_all(n: usize, sets: &[Set<'_>], cover: &Cover) -> bool {
        let mut seen = vec![false; n];
        for &j in &cover.sets {
            for &e in sets[j].elements {
                seen[e as usize] = true;
            }
        }
        for &e in &cover.alone {
            seen[e as usize] = true;
        }
        seen.into_iter().all(|s| s)
    }

    #[test]
    fn covers_are_the_cheapest_in_small_cases() {
        let range = |r: std::ops::Range<u32>| r.collect::<Vec<u32>>();
        // (elements, sets as (cost, elements)) -> (chosen sets, elements alone)
        type Case = (usize, Vec<(usize, Vec<u32>)>, Vec<usize>, Vec<u32>);
        let table: Vec<Case> = vec![
            // Nothing to cover.
            (0, vec![], vec![], vec![]),
            // No sets: each alone.
            (2, vec![], vec![], vec![0, 1]),
            // A set no cheaper than its elements alone is not taken (alone is exact).
            (2, vec![(1, vec![0]), (2, vec![0, 1])], vec![], vec![0, 1]),
            // Three elements for two: taken.
            (3, vec![(2, vec![0, 1, 2])], vec![0], vec![]),
            // Greedy's trap: the crossing sets hold more per unit at each step (8, then 4,
            // then 2), but the two rows cover everything for 2.
            (
                14,
                vec![
                    (1, vec![0, 1, 2, 3, 7, 8, 9, 10]),
                    (1, vec![4, 5, 11, 12]),
                    (1, vec![6, 13]),
                    (1, range(0..7)),
                    (1, range(7..14)),
                ],
                vec![3, 4],
                vec![],
            ),
            // Two pages for fifteen beats one page of ten and five alone; the crossing page
            // made needless is dropped.
            (
                30,
                vec![(1, range(10..20)), (2, range(0..15)), (2, range(15..30))],
                vec![1, 2],
                vec![],
            ),
        ];
        for (n, table, want_sets, want_alone) in table {
            let sets = sets(&table);
            let cover = solve(n, &sets);
            assert!(covers_all(n, &sets, &cover), "{n}: {cover:?}");
            assert_eq!(cover.sets, want_sets, "{n}");
            assert_eq!(cover.alone, want_alone, "{n}");
        }
    }

    #[test]
    fn greedy_alone_falls_into_the_trap_the_prices_avoid() {
        let table = vec![
            (1, vec![0, 1, 2, 3, 7, 8, 9, 10]),
            (1, vec![4, 5, 11, 12]),
            (1, vec![6, 13]),
            (1, (0..7).collect()),
            (1, (7..14).collect()),
        ];
        let sets = sets(&table);
        assert_eq!(reduce(14, &sets, greedy(14, &sets, &[])).cost(&sets), 3);
        assert_eq!(solve(14, &sets).cost(&sets), 2);
    }
}
