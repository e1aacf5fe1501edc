//! The cover plan of a capped repository: which pages of which `name`-filtered views reach the
//! tags the plain views could not show, decided from what is stored. Pure: the writer commits
//! what it returns.
//!
//! Facts relied on (see the README's "Anonymous paging cap"):
//! - anonymous tag listings stop at offset [`VIEW_DEPTH`] (1000), `page_size` at most 100, and any
//!   page below the cap can be asked for directly (`page=k`);
//! - every view sorts by `last_updated`, newest first (`ordering=last_updated`, the default) or
//!   oldest first (`-last_updated`); a `name` filter keeps the tags whose name contains it
//!   (case-insensitive) in that same order;
//! - the registry's `tags/list` names every tag of the repository (not capped).
//!
//! So once the newest-first and oldest-first views are stored, every tag still missing lies
//! between them in push order. In a filter's view, its tags stored from the newest view come
//! first and those from the oldest view last; its missing tags sit in between, together with
//! any stored tag whose place is not known (read by an earlier round, or skipped for an invalid
//! name). Counting these from the names gives the exact range of positions the missing tags of
//! each filter occupy in each order; a filter whose range lies below the cap in one of the orders
//! reaches them all with the pages of that range. A greedy set cover picks the filters that reach
//! the most missing tags per page; a tag no word of any missing name reaches is tried with its
//! full name as the filter (a view of one or a few tags). A tie in push time at a view's boundary
//! can shift a tag by one position, so the writer plans again after each round from what was
//! stored, until every name is stored or [`MAX_COVER_ROUNDS`] rounds are spent.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Positions an anonymous view shows: pages beyond offset 1000 answer 403.
pub const VIEW_DEPTH: usize = 1000;
/// Rounds of planned pages before a repository whose names are still not all stored is given up
/// as incomplete (each round plans again from what the previous ones stored).
pub const MAX_COVER_ROUNDS: u32 = 4;

/// A stored tag: its name and `last_updated` (the time Hub sorts by; `None` sorts as oldest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTag {
    /// The tag name.
    pub name: String,
    /// Its `last_updated`, as Hub wrote it (RFC 3339 of one format, so text order is time order).
    pub updated: Option<String>,
}

/// One page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPage {
    /// The `name` filter.
    pub filter: String,
    /// Oldest first instead of newest first.
    pub oldest: bool,
    /// The page number, from 1.
    pub page: u32,
    /// The page size asked for (at most the largest Hub serves).
    pub size: u32,
}

/// What to read next for a capped repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverPlan {
    /// Names the registry lists that are neither stored nor skipped.
    pub missing: usize,
    /// The pages to read, grouped by view, each view's pages in order.
    pub pages: Vec<PlannedPage>,
    /// Missing names no view below the cap reaches.
    pub unreachable: Vec<String>,
}

/// Plans the pages that reach every name of `names` not stored and not `skipped`.
///
/// `stored` are the tags stored for the repository; `depth` is how far a view can be read
/// ([`VIEW_DEPTH`]) and `page_size` the largest page size Hub serves. A range of positions is
/// read with the page size (up to that) that needs the fewest pages: a range of 40 positions
/// from 90 takes two pages of 100 but one of 90 (page 2, positions 90 to 179).
pub fn plan_cover(
    names: &[String],
    stored: &[StoredTag],
    skipped: &dyn Fn(&str) -> bool,
    depth: usize,
    page_size: usize,
) -> CoverPlan {
    let mut unique: Vec<&str> = names.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let listed: HashSet<&str> = unique.iter().copied().collect();

    // Stored tags still listed, newest first as Hub orders them (time, then name ascending).
    let mut by_time: Vec<&StoredTag> = stored
        .iter()
        .filter(|t| listed.contains(t.name.as_str()))
        .collect();
    by_time.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| a.name.cmp(&b.name)));
    let newest: HashSet<&str> = by_time
        .iter()
        .take(depth)
        .map(|t| t.name.as_str())
        .collect();
    by_time.sort_by(|a, b| a.updated.cmp(&b.updated).then_with(|| a.name.cmp(&b.name)));
    let oldest: HashSet<&str> = by_time
        .iter()
        .take(depth)
        .map(|t| t.name.as_str())
        .collect();
    let is_stored: HashSet<&str> = by_time.iter().map(|t| t.name.as_str()).collect();

    /// Where a listed name stands: in the newest view, in the oldest, between them with a known
    /// place unknown (stored or skipped), or missing.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Place {
        Newest,
        Oldest,
        Between,
        Missing,
    }
    let places: Vec<Place> = unique
        .iter()
        .map(|name| {
            if newest.contains(name) {
                Place::Newest
            } else if oldest.contains(name) {
                Place::Oldest
            } else if is_stored.contains(name) || skipped(name) {
                Place::Between
            } else {
                Place::Missing
            }
        })
        .collect();
    let missing: Vec<usize> = (0..unique.len())
        .filter(|&i| places[i] == Place::Missing)
        .collect();
    if missing.is_empty() {
        return CoverPlan::default();
    }
    let lowered: Vec<String> = unique.iter().map(|n| n.to_lowercase()).collect();

    // A view of `filter`: the missing names it reaches and its pages, in the better order.
    let view = |filter: &str| -> Option<Candidate> {
        let filter = filter.to_lowercase();
        let (mut newer, mut older, mut between) = (0usize, 0usize, 0usize);
        let mut reaches = Vec::new();
        for (i, name) in lowered.iter().enumerate() {
            if !name.contains(&filter) {
                continue;
            }
            match places[i] {
                Place::Newest => newer += 1,
                Place::Oldest => older += 1,
                Place::Between => between += 1,
                Place::Missing => reaches.push(i),
            }
        }
        if reaches.is_empty() {
            return None;
        }
        let span = reaches.len() + between;
        [(newer, false), (older, true)]
            .into_iter()
            .filter(|(start, _)| start + span <= depth)
            .map(|(start, oldest)| {
                let (first, last, size) = pages_for(start, span, page_size);
                (first, last, size, oldest)
            })
            .min_by_key(|(first, last, size, oldest)| (last - first, *oldest, Reverse(*size)))
            .map(|(first, last, size, oldest)| Candidate {
                filter: filter.clone(),
                oldest,
                first,
                last,
                size,
                reaches,
            })
    };

    let mut words: Vec<&str> = missing
        .iter()
        .flat_map(|&i| cover_words(unique[i]))
        .collect();
    words.sort_unstable();
    words.dedup();
    let candidates: Vec<Candidate> = words.into_iter().filter_map(&view).collect();
    // Greedy set cover is only as good as the sets offered: broad words (a lone digit) reach
    // many tags per page at first and leave costly remainders, and two crossing partitions
    // (variants and version lines) make each other's views half redundant. Plan with every
    // word, without bare numbers, with version lines and non-numeric words, and with version
    // lines alone; keep the cheapest.
    let families: [&dyn Fn(&str) -> bool; 4] = [
        &|_| true,
        &|w| !w.bytes().all(|b| b.is_ascii_digit()),
        &|w| w.contains('.') || !w.bytes().any(|b| b.is_ascii_digit()),
        &|w| w.contains('.'),
    ];
    let mut best: Option<(usize, Vec<PlannedPage>, Vec<usize>)> = None;
    for family in families {
        let offered: Vec<&Candidate> = candidates.iter().filter(|c| family(&c.filter)).collect();
        let mut uncovered: HashSet<usize> = missing.iter().copied().collect();
        let mut chosen = greedy(&offered, &mut uncovered);
        // Names no word reaches below the cap: their full name is the narrowest filter.
        let mut stragglers: Vec<usize> = uncovered.iter().copied().collect();
        stragglers.sort_unstable();
        // Asking for a tag by name costs one request: a view of more pages than the stragglers
        // it reaches is worse than that.
        let narrow: Vec<Candidate> = stragglers
            .iter()
            .filter_map(|&i| view(unique[i]))
            .filter(|c| c.cost() <= c.reaches.iter().filter(|i| uncovered.contains(i)).count())
            .collect();
        let narrow: Vec<&Candidate> = narrow.iter().collect();
        chosen.extend(greedy(&narrow, &mut uncovered));
        let chosen = without_redundant(chosen);
        let pages: Vec<PlannedPage> = chosen.iter().flat_map(|c| c.pages()).collect();
        let cost = pages.len() + uncovered.len();
        if best.as_ref().is_none_or(|(c, ..)| cost < *c) {
            let mut left: Vec<usize> = uncovered.into_iter().collect();
            left.sort_unstable();
            best = Some((cost, pages, left));
        }
    }
    let (_, pages, left) = best.expect("every family plans");
    CoverPlan {
        missing: missing.len(),
        pages,
        unreachable: left.into_iter().map(|i| unique[i].to_owned()).collect(),
    }
}

/// Drops chosen views whose every missing tag another chosen view reaches too, costliest
/// first: greedy picks broad views early that later picks make needless.
fn without_redundant(chosen: Vec<&Candidate>) -> Vec<&Candidate> {
    let mut times: HashMap<usize, usize> = HashMap::new();
    for c in &chosen {
        for i in &c.reaches {
            *times.entry(*i).or_default() += 1;
        }
    }
    let mut order: Vec<usize> = (0..chosen.len()).collect();
    order.sort_by_key(|&at| (Reverse(chosen[at].cost()), Reverse(at)));
    let mut keep = vec![true; chosen.len()];
    for at in order {
        if chosen[at].reaches.iter().all(|i| times[i] > 1) {
            keep[at] = false;
            for i in &chosen[at].reaches {
                *times.get_mut(i).expect("counted above") -= 1;
            }
        }
    }
    chosen
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

/// The pages (first, last, page size) reading positions `start..start + span` in fewest
/// requests, page sizes up to `max_size`; the largest such size on a tie.
fn pages_for(start: usize, span: usize, max_size: usize) -> (u32, u32, u32) {
    (1..=max_size.max(1))
        .rev()
        .map(|size| {
            let first = start / size;
            let last = (start + span - 1) / size;
            (last - first, first as u32 + 1, last as u32 + 1, size as u32)
        })
        .min_by_key(|(n, ..)| *n)
        .map(|(_, first, last, size)| (first, last, size))
        .expect("at least one page size")
}

/// A view a plan may read: `filter` in one order, pages `first..=last` of `size`, reaching
/// `reaches`.
struct Candidate {
    filter: String,
    oldest: bool,
    first: u32,
    last: u32,
    size: u32,
    reaches: Vec<usize>,
}

impl Candidate {
    fn cost(&self) -> usize {
        (self.last - self.first + 1) as usize
    }

    fn pages(&self) -> impl Iterator<Item = PlannedPage> + '_ {
        (self.first..=self.last).map(|page| PlannedPage {
            filter: self.filter.clone(),
            oldest: self.oldest,
            page,
            size: self.size,
        })
    }
}

/// Picks views by most uncovered names reached per page until none reaches one; returns them
/// in the order picked.
///
/// Lazy greedy: a view's gain only shrinks as others are picked, so a gain computed earlier is
/// an upper bound; the best bound is computed afresh and taken if it still beats every other
/// bound.
fn greedy<'c>(candidates: &[&'c Candidate], uncovered: &mut HashSet<usize>) -> Vec<&'c Candidate> {
    let mut heap: BinaryHeap<Bound> = candidates
        .iter()
        .enumerate()
        .map(|(at, c)| Bound {
            gain: c.reaches.len(),
            cost: c.cost(),
            at,
        })
        .collect();
    let mut chosen = Vec::new();
    while let Some(top) = heap.pop() {
        let candidate = candidates[top.at];
        let gain = candidate
            .reaches
            .iter()
            .filter(|i| uncovered.contains(i))
            .count();
        if gain == 0 {
            continue;
        }
        let fresh = Bound { gain, ..top };
        if heap.peek().is_some_and(|next| *next > fresh) {
            heap.push(fresh);
            continue;
        }
        for i in &candidate.reaches {
            uncovered.remove(i);
        }
        chosen.push(candidate);
    }
    chosen
}

/// A candidate's gain (uncovered names reached, as last computed) for its cost in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound {
    gain: usize,
    cost: usize,
    at: usize,
}

impl Ord for Bound {
    /// Most names per page; then more names; then the candidate found first (words are sorted),
    /// so the plan is deterministic.
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

/// The words a tag name is made of (`3.12.7-slim-bookworm` → `3`, `12`, `7`, `slim`, `bookworm`),
/// plus its version line (`3.12`) and version (`3.12.7`): the substrings that group tags pushed
/// together.
pub(super) fn words(tag: &str) -> Vec<&str> {
    let mut out: Vec<&str> = tag
        .split(['-', '.', '_'])
        .filter(|w| !w.is_empty())
        .collect();
    let version = tag.split(['-', '_']).next().unwrap_or("");
    if version.contains('.') {
        out.push(version);
        let mut dots = version.match_indices('.');
        if let (Some(_), Some((second, _))) = (dots.next(), dots.next()) {
            out.push(&version[..second]);
        }
    }
    out
}

/// [`words`], and for the plan also the version line with its dot (`3.12.`: the line's releases
/// without `3.120.0` or `13.12.1`, which `3.12` also matches) and the version with its separator
/// (`3.12-`: exactly that version's variants, such as the line's aliases `3.12-slim`).
fn cover_words(tag: &str) -> Vec<&str> {
    let mut out = words(tag);
    let version = tag.split(['-', '_']).next().unwrap_or("");
    if version.contains('.') {
        let mut dots = version.match_indices('.');
        if let (Some(_), Some((second, _))) = (dots.next(), dots.next()) {
            out.push(&version[..=second]);
        }
        if tag.len() > version.len() {
            out.push(&tag[..=version.len()]);
        }
    }
    out
}

/// Counts of a plan's pages by filter, for log lines.
pub fn views(plan: &CoverPlan) -> usize {
    let mut seen: HashMap<(&str, bool), ()> = HashMap::new();
    for p in &plan.pages {
        seen.insert((p.filter.as_str(), p.oldest), ());
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(tags: &[(&str, &str)]) -> Vec<StoredTag> {
        tags.iter()
            .map(|(n, t)| StoredTag {
                name: (*n).to_owned(),
                updated: Some((*t).to_owned()),
            })
            .collect()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    fn page(filter: &str, oldest: bool, page: u32) -> PlannedPage {
        PlannedPage {
            filter: filter.to_owned(),
            oldest,
            page,
            size: 1,
        }
    }

    fn sized(filter: &str, oldest: bool, page: u32, size: u32) -> PlannedPage {
        PlannedPage {
            size,
            ..self::page(filter, oldest, page)
        }
    }

    #[test]
    fn a_range_is_read_with_the_page_size_needing_fewest_pages() {
        // (start, span, largest size) -> (first page, last page, size)
        let table = [
            ((0, 100, 100), (1, 1, 100)),
            ((90, 40, 100), (2, 2, 90)),
            ((95, 10, 100), (2, 2, 95)),
            ((0, 250, 100), (1, 3, 100)),
            ((100, 100, 100), (2, 2, 100)),
            // No page of at most 100 holds positions 150 to 249.
            ((150, 100, 100), (2, 3, 100)),
            ((999, 1, 100), (10, 10, 100)),
            ((7, 3, 1), (8, 10, 1)),
        ];
        for ((start, span, max), want) in table {
            assert_eq!(pages_for(start, span, max), want, "{start} {span} {max}");
        }
    }

    #[test]
    fn words_of_tags() {
        assert_eq!(
            words("3.12.7-slim-bookworm"),
            ["3", "12", "7", "slim", "bookworm", "3.12.7", "3.12"]
        );
        assert_eq!(
            cover_words("3.12.7-slim-bookworm")[7..],
            ["3.12.", "3.12.7-"]
        );
        assert_eq!(words("3.12-slim"), ["3", "12", "slim", "3.12"]);
        assert_eq!(cover_words("3.12-slim")[4..], ["3.12-"]);
        assert_eq!(words("latest"), ["latest"]);
        assert_eq!(words("22.04"), ["22", "04", "22.04"]);
    }

    #[test]
    fn nothing_missing_plans_nothing() {
        let plan = plan_cover(
            &names(&["a", "b"]),
            &stored(&[("a", "2"), ("b", "1")]),
            &|_| false,
            2,
            1,
        );
        assert_eq!(plan, CoverPlan::default());
        // A skipped name counts as seen.
        let plan = plan_cover(
            &names(&["a", "b", "bad!"]),
            &stored(&[("a", "2"), ("b", "1")]),
            &|n| n == "bad!",
            2,
            1,
        );
        assert_eq!(plan.missing, 0);
    }

    /// Depth 2, page size 1: newest view `ab9`,`cd8`; oldest view `ab1`,`cd2`; `ab` and `cd`
    /// missing between them. (A name with no separator is one word, so no narrower filter
    /// exists.)
    fn middle() -> (Vec<String>, Vec<StoredTag>) {
        (
            names(&["ab9", "cd8", "ab", "cd", "ab1", "cd2"]),
            stored(&[("ab9", "9"), ("cd8", "8"), ("ab1", "1"), ("cd2", "2")]),
        )
    }

    #[test]
    fn missing_tags_are_reached_at_their_exact_pages() {
        let (names, stored) = middle();
        let plan = plan_cover(&names, &stored, &|_| false, 2, 1);
        assert_eq!(plan.missing, 2);
        // `ab` shows ab9 first newest-first, so the missing `ab` is at position 1: page 2.
        assert_eq!(plan.pages, [page("ab", false, 2), page("cd", false, 2)]);
        assert!(plan.unreachable.is_empty());
    }

    #[test]
    fn the_order_whose_range_fits_below_the_cap_is_chosen() {
        // Depth 3: `a` has three tags in the newest view, so its missing one is at position 3,
        // beyond the cap; oldest first, it comes after one tag (a2): page 2.
        let names = names(&["a9", "a8", "a7", "b6", "a", "b1", "a2"]);
        let stored = stored(&[
            ("a9", "9"),
            ("a8", "8"),
            ("a7", "7"),
            ("b6", "6"),
            ("b1", "1"),
            ("a2", "2"),
        ]);
        let plan = plan_cover(&names, &stored, &|_| false, 3, 1);
        assert_eq!(plan.missing, 1);
        assert_eq!(plan.pages, [page("a", true, 2)]);
    }

    #[test]
    fn tags_between_with_unknown_places_widen_the_range() {
        // Depth 3: newest view ab9, cd8, cd7; oldest view ab1, cd2, cd3. ab6 was read by an
        // earlier round: its place among the missing is unknown, so the range of `ab` covers two
        // positions (pages 2 and 3), which costs more than asking for `ab` by name; `cd`
        // reaches its missing tag at page 3 alone.
        let base = [
            ("ab9", "9"),
            ("cd8", "8"),
            ("cd7", "7"),
            ("ab1", "1"),
            ("cd2", "2"),
            ("cd3", "3"),
        ];
        let listed = ["ab9", "cd8", "cd7", "ab", "cd", "ab1", "cd2", "cd3"];
        let want = [page("cd", false, 3)];
        let mut with_ab6 = stored(&base);
        with_ab6.push(StoredTag {
            name: "ab6".into(),
            updated: Some("6".into()),
        });
        let mut names_ab6 = names(&listed);
        names_ab6.push("ab6".into());
        let plan = plan_cover(&names_ab6, &with_ab6, &|_| false, 3, 1);
        assert_eq!(plan.missing, 2);
        assert_eq!(plan.pages, want);
        assert_eq!(plan.unreachable, ["ab"]);
        // A skipped name's place is unknown too.
        let mut names_bad = names(&listed);
        names_bad.push("ab-bad!".into());
        let plan = plan_cover(&names_bad, &stored(&base), &|n| n == "ab-bad!", 3, 1);
        assert_eq!(plan.missing, 2);
        assert_eq!(plan.pages, want);
        assert_eq!(plan.unreachable, ["ab"]);
        // Without either, `ab` needs one page.
        let plan = plan_cover(&names(&listed), &stored(&base), &|_| false, 3, 1);
        assert_eq!(plan.pages, [page("ab", false, 2), page("cd", false, 3)]);
    }

    #[test]
    fn a_filter_reaching_many_per_page_beats_many_narrow_ones() {
        // Depth 10, page size 5: newest view n0..n9, oldest view o0..o9 (`v1-` and `v2-`
        // tags), 8 missing `m` tags; `m` reaches all 8 from position 0 in 2 pages.
        let mut all = Vec::new();
        let mut st = Vec::new();
        for i in 0..10 {
            all.push(format!("v1-n{i}"));
            st.push((format!("v1-n{i}"), format!("3{i}")));
            all.push(format!("v2-o{i}"));
            st.push((format!("v2-o{i}"), format!("1{i}")));
        }
        for i in 0..8 {
            all.push(format!("m{i}-v3"));
        }
        let stored: Vec<StoredTag> = st
            .into_iter()
            .map(|(name, t)| StoredTag {
                name,
                updated: Some(t),
            })
            .collect();
        let plan = plan_cover(&all, &stored, &|_| false, 10, 5);
        assert_eq!(plan.missing, 8);
        // Eight positions from 0: one page of 8 (or fewer pages cannot be).
        assert_eq!(
            plan.pages,
            [sized("v3", false, 1, 5), sized("v3", false, 2, 5)]
        );
    }

    #[test]
    fn a_name_no_word_reaches_is_tried_by_its_full_name_or_named_unreachable() {
        // Depth 1: `a` and `b` each show a stored tag first in both orders, so neither fits;
        // the full name `a-b` is a view of that one tag.
        let names = names(&["b-a", "a-b", "a-c-b"]);
        let stored = stored(&[("b-a", "9"), ("a-c-b", "1")]);
        let plan = plan_cover(&names, &stored, &|_| false, 1, 1);
        assert_eq!(plan.pages, [page("a-b", false, 1)]);
        // Its full name is part of stored names at both ends: nothing fits.
        let names = names_of(&["z-1x", "z-1", "z-1y"]);
        let stored = stored_of(&[("z-1x", "9"), ("z-1y", "1")]);
        let plan = plan_cover(&names, &stored, &|_| false, 1, 1);
        assert_eq!(plan.unreachable, ["z-1"]);
        assert!(plan.pages.is_empty());
    }

    fn names_of(n: &[&str]) -> Vec<String> {
        names(n)
    }

    fn stored_of(t: &[(&str, &str)]) -> Vec<StoredTag> {
        stored(t)
    }

    #[test]
    fn stored_tags_the_registry_no_longer_lists_do_not_shift_positions() {
        let (names, mut stored) = middle();
        // A tag deleted since: Hub's views no longer show it.
        stored.push(StoredTag {
            name: "ab99".into(),
            updated: Some("99".into()),
        });
        let plan = plan_cover(&names, &stored, &|_| false, 2, 1);
        assert_eq!(plan.pages, [page("ab", false, 2), page("cd", false, 2)]);
    }
}
