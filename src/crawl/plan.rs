//! The cover plan of a capped repository: which pages of which `name`-filtered views reach the
//! tags the plain views could not show, decided from what is stored. Pure: the writer commits
//! what it returns.
//!
//! Facts relied on (see the README's "Anonymous paging cap"):
//! - an anonymous tag listing answers a page while its offset `(page-1)*page_size` is below
//!   [`VIEW_DEPTH`] (1000), and 403 from there; `page_size` is at most 100, and any page below the
//!   cap can be asked for directly (`page=k`). So page 11 of 99 (offset 990) still answers, with
//!   positions 990 to 1088, and a range can be read with pages of different sizes, each starting
//!   where a page of its size can;
//! - every view sorts by `last_updated`, newest first (`ordering=last_updated`, the default) or
//!   oldest first (`-last_updated`), tags pushed at the same instant by name (in both orders), a
//!   tag without a time as oldest; a `name` filter keeps the tags whose name contains it
//!   (case-insensitive) in that same order;
//! - the registry's `tags/list` names every tag of the repository (not capped).
//!
//! So once the newest-first and oldest-first views are stored, every tag still missing lies
//! between them in push order. In a filter's view, its tags stored from the newest view come
//! first and those from the oldest view last; its missing tags sit in between, together with
//! any stored tag whose place is not known (read by an earlier round, or skipped for an invalid
//! name). Counting these from the names gives the block of positions the missing tags of each
//! filter occupy in each order; the pages reaching that block from one end, or its newer part
//! newest first and the rest oldest first, read them all. Which tag of the block sits where is not
//! known, so a view is only ever counted on for its whole block.
//!
//! The filters offered are the words of the missing names (version lines like `3.12` and `3.12.`,
//! versions, variants like `slim`) and each missing name in full; asking for a tag by name costs
//! one request. Choosing the views is a weighted set cover (pages per view), solved in
//! [`solve`]. A tie in push time at a view's boundary can shift a tag by a position, so the writer
//! plans again after each round from what was stored, until every name is stored or
//! [`MAX_COVER_ROUNDS`] rounds are spent.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

mod solve;

/// The offset at which anonymous views stop: a page starting there or beyond answers 403.
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
    /// Missing names to ask for by name: no view below the cap reaches them, or none for less
    /// than a page each.
    pub unreachable: Vec<String>,
}

/// Plans the pages that reach every name of `names` not stored and not `skipped`.
///
/// `stored` are the tags stored for the repository; `depth` is the offset at which views stop
/// ([`VIEW_DEPTH`]: the plain views hold the first `depth` tags of each order, and a page is
/// answered while it starts below it) and `page_size` the largest page size Hub serves. A range
/// of positions is read with the fewest pages of any sizes up to that: 40 positions from 90 take
/// one page of 90 (page 2, positions 90 to 179), not two of 100.
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
    let (newest, newest_tied) = shown(&by_time, depth);
    by_time.sort_by(|a, b| a.updated.cmp(&b.updated).then_with(|| a.name.cmp(&b.name)));
    let (oldest, oldest_tied) = shown(&by_time, depth);
    let is_stored: HashSet<&str> = by_time.iter().map(|t| t.name.as_str()).collect();

    let places: Vec<Place> = unique
        .iter()
        .map(|name| {
            if newest.contains(name) {
                Place::Newest {
                    tied: newest_tied.contains(name),
                }
            } else if oldest.contains(name) {
                Place::Oldest {
                    tied: oldest_tied.contains(name),
                }
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
    let geometry = Geometry::new(depth, page_size);
    // The most tags pushed at one instant: a split view's two parts overlap by at least one
    // fewer, so a tie where they meet (listed by name in both orders) is read whole.
    let mut instants: HashMap<&str, usize> = HashMap::new();
    for t in &by_time {
        if let Some(at) = &t.updated {
            *instants.entry(at.as_str()).or_default() += 1;
        }
    }
    let margin = instants.values().max().map_or(0, |n| n - 1);

    // The filters offered: words of the missing names, and each missing name in full (the
    // narrowest view of it).
    let mut words: Vec<String> = missing
        .iter()
        .flat_map(|&i| cover_words(unique[i]))
        .chain(missing.iter().map(|&i| unique[i]))
        .map(str::to_lowercase)
        .collect();
    words.sort_unstable();
    words.dedup();
    // Each missing name's number among the missing, the elements the cover is solved over.
    let mut element = vec![u32::MAX; unique.len()];
    for (at, &i) in missing.iter().enumerate() {
        element[i] = at as u32;
    }
    let counts = count_views(&unique, &places, &element, &words);
    let view = |at: usize| -> Option<Candidate> {
        let counted = &counts[at];
        if counted.reaches.is_empty() {
            return None;
        }
        let span = counted.reaches.len() + counted.between;
        let pages = geometry.block(counted, span, margin)?;
        let filter = &words[at];
        Some(Candidate {
            pages: pages
                .into_iter()
                .map(|(oldest, page, size)| PlannedPage {
                    filter: filter.clone(),
                    oldest,
                    page,
                    size,
                })
                .collect(),
            reaches: counted.reaches.clone(),
        })
    };
    let candidates: Vec<Candidate> = (0..words.len()).filter_map(view).collect();
    let sets: Vec<solve::Set<'_>> = candidates
        .iter()
        .map(|c| solve::Set {
            cost: c.cost(),
            elements: &c.reaches,
        })
        .collect();
    let cover = solve::solve(missing.len(), &sets);
    CoverPlan {
        missing: missing.len(),
        pages: cover
            .sets
            .iter()
            .flat_map(|&j| candidates[j].pages.iter().cloned())
            .collect(),
        unreachable: cover
            .alone
            .iter()
            .map(|&e| unique[missing[e as usize]].to_owned())
            .collect(),
    }
}

/// The tags a view of `by_time` (in its order) shows up to `depth`, and those of them pushed at
/// the instant its last one was, when the view stops there: the tags of that instant are listed
/// by name in both orders, so missing ones may follow them either way.
fn shown<'a>(by_time: &[&'a StoredTag], depth: usize) -> (HashSet<&'a str>, HashSet<&'a str>) {
    let shown = &by_time[..depth.min(by_time.len())];
    let edge = shown
        .last()
        .filter(|_| by_time.len() > depth)
        .map(|t| &t.updated);
    let tied = shown
        .iter()
        .filter(|t| Some(&t.updated) == edge)
        .map(|t| t.name.as_str())
        .collect();
    (shown.iter().map(|t| t.name.as_str()).collect(), tied)
}

/// Where a listed name stands: in the newest view, in the oldest, between them with its place
/// unknown (stored by a cover round, or skipped), or missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In the view, and `tied` with its last tag (pushed at the same instant).
    Newest {
        tied: bool,
    },
    Oldest {
        tied: bool,
    },
    Between,
    Missing,
}

/// What the view of one filter holds: its tags in the newest view (which come first, newest
/// first), in the oldest view (last), between them with unknown places, and the missing names
/// it reaches.
#[derive(Debug, Default, Clone)]
struct Counted {
    newer: usize,
    older: usize,
    /// Of `newer`, those tied with the newest view's last tag; of `older`, with the oldest's.
    newer_tied: usize,
    older_tied: usize,
    between: usize,
    reaches: Vec<u32>,
}

/// Counts, for every filter of `words` (lowercase, sorted), the names of `unique` whose
/// lowercase holds it (Hub's `name` filter), by place.
///
/// Every substring of every name is looked up once, rather than every name scanned per word:
/// thousands of words over tens of thousands of names would take seconds.
fn count_views(
    unique: &[&str],
    places: &[Place],
    element: &[u32],
    words: &[String],
) -> Vec<Counted> {
    let index: HashMap<&str, usize> = words
        .iter()
        .enumerate()
        .map(|(at, w)| (w.as_str(), at))
        .collect();
    let longest = words.iter().map(String::len).max().unwrap_or(0);
    let mut counts = vec![Counted::default(); words.len()];
    // The name a word was last counted for: a name holding a word twice counts once.
    let mut last = vec![usize::MAX; words.len()];
    for (i, name) in unique.iter().enumerate() {
        let lowered = name.to_lowercase();
        let bounds: Vec<usize> = lowered
            .char_indices()
            .map(|(at, _)| at)
            .chain([lowered.len()])
            .collect();
        for (from_at, &from) in bounds.iter().enumerate() {
            for &to in &bounds[from_at + 1..] {
                if to - from > longest {
                    break;
                }
                let Some(&at) = index.get(&lowered[from..to]) else {
                    continue;
                };
                if last[at] == i {
                    continue;
                }
                last[at] = i;
                let counted = &mut counts[at];
                match places[i] {
                    Place::Newest { tied } => {
                        counted.newer += 1;
                        counted.newer_tied += usize::from(tied);
                    }
                    Place::Oldest { tied } => {
                        counted.older += 1;
                        counted.older_tied += usize::from(tied);
                    }
                    Place::Between => counted.between += 1,
                    Place::Missing => counted.reaches.push(element[i]),
                }
            }
        }
    }
    counts
}

/// The pages a view can be read with: page `k` of size `s` (up to the largest Hub serves) holds
/// positions `(k-1)s` to `ks - 1`, and is answered while its offset `(k-1)s` is below the cap.
/// So positions a little beyond the cap are reachable (offset 990, size 99: up to 1088), and a
/// range can be read with pages of different sizes, each starting where one of its size can.
struct Geometry {
    /// For each reachable position, the page holding it that reaches furthest: (its end, size).
    furthest: Vec<(usize, usize)>,
}

impl Geometry {
    fn new(cap: usize, max_size: usize) -> Self {
        let max_size = max_size.max(1);
        // Reachability only shrinks with the position: a page of size `s` holding `x` starts at
        // or after the one holding `x - 1`.
        let furthest = (0..)
            .map_while(|x: usize| {
                (1..=max_size)
                    .filter_map(|size| {
                        let offset = x / size * size;
                        (offset < cap).then_some((offset + size, size))
                    })
                    .max()
            })
            .collect();
        Geometry { furthest }
    }

    /// The positions the pages read from `start` reach, fewest pages first: `[start, after one
    /// page, after two, ...]`, each page chosen to reach furthest (which is optimal for covering
    /// a range of positions with pages).
    fn reach_from(&self, start: usize) -> Vec<usize> {
        let mut ends = vec![start];
        let mut at = start;
        while let Some(&(end, _)) = self.furthest.get(at) {
            ends.push(end);
            at = end;
        }
        ends
    }

    /// The first `count` pages of the chain from `start` (see [`Geometry::reach_from`]).
    fn pages(&self, start: usize, count: usize, oldest: bool) -> Vec<(bool, u32, u32)> {
        let mut out = Vec::with_capacity(count);
        let mut at = start;
        for _ in 0..count {
            let (end, size) = self.furthest[at];
            out.push((oldest, (end / size) as u32, size as u32));
            at = end;
        }
        out
    }

    /// The fewest pages reading the block of a view's `span` positions between its tags in the
    /// newest view and in the oldest (`counted`): from one end, or its newest part newest first
    /// and the rest oldest first. `None` when no split reaches the whole block.
    ///
    /// Tags pushed at one instant are listed by name in both orders, not reversed. So the tags
    /// of the oldest view tied with its last one may come, newest first, before missing tags of
    /// that instant: read from the newest end alone, the block is that much longer (and the same
    /// from the oldest end). Where the two parts of a split meet they overlap as much as the
    /// same number of pages allows, and by at least `margin` (the largest tie known), for a tie
    /// split between them.
    fn block(
        &self,
        counted: &Counted,
        span: usize,
        margin: usize,
    ) -> Option<Vec<(bool, u32, u32)>> {
        let (newer, older) = (counted.newer, counted.older);
        let from_newest = self.reach_from(newer);
        let from_oldest = self.reach_from(older);
        // Fewest pages, then from one end alone, then the most overlap; and the pages from each
        // end.
        type Key = (usize, bool, Reverse<usize>);
        let mut best: Option<(Key, usize, usize)> = None;
        let mut consider = |pages_newest: usize, pages_oldest: usize, overlap: usize| {
            let both = pages_newest > 0 && pages_oldest > 0;
            let key = (pages_newest + pages_oldest, both, Reverse(overlap));
            if best.as_ref().is_none_or(|(k, ..)| key < *k) {
                best = Some((key, pages_newest, pages_oldest));
            }
        };
        let alone =
            |from: &[usize], start: usize, len: usize| from.iter().position(|&e| e - start >= len);
        if let Some(pages) = alone(&from_newest, newer, span + counted.older_tied) {
            consider(pages, 0, 0);
        }
        if let Some(pages) = alone(&from_oldest, older, span + counted.newer_tied) {
            consider(0, pages, 0);
        }
        for (pages_newest, &end) in from_newest.iter().enumerate().skip(1) {
            let got = end - newer;
            if got >= span {
                break;
            }
            if let Some(pages_oldest) = alone(&from_oldest, older, span - got + margin) {
                let overlap = got + (from_oldest[pages_oldest] - older) - span;
                consider(pages_newest, pages_oldest, overlap);
            }
        }
        let (_, pages_newest, pages_oldest) = best?;
        let mut pages = self.pages(newer, pages_newest, false);
        pages.extend(self.pages(older, pages_oldest, true));
        Some(pages)
    }
}

/// A view a plan may read: its pages, and the missing names they reach (their numbers among the
/// missing).
struct Candidate {
    pages: Vec<PlannedPage>,
    reaches: Vec<u32>,
}

impl Candidate {
    fn cost(&self) -> usize {
        self.pages.len()
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

    /// The pages (page, size) reading `len` positions from `start`, fewest first.
    fn range(geometry: &Geometry, start: usize, len: usize) -> Option<Vec<(u32, u32)>> {
        let count = geometry
            .reach_from(start)
            .iter()
            .position(|&end| end - start >= len)?;
        Some(
            geometry
                .pages(start, count, false)
                .into_iter()
                .map(|(_, page, size)| (page, size))
                .collect(),
        )
    }

    #[test]
    fn a_range_is_read_with_the_fewest_pages_of_any_sizes() {
        let hub = Geometry::new(1000, 100);
        // (start, length) -> pages (page, size)
        type Case<'a> = ((usize, usize), Option<&'a [(u32, u32)]>);
        let table: [Case; 10] = [
            ((0, 100), Some(&[(1, 100)])),
            ((90, 40), Some(&[(2, 90)])),
            ((95, 10), Some(&[(2, 95)])),
            ((0, 250), Some(&[(1, 100), (2, 100), (3, 100)])),
            ((100, 100), Some(&[(2, 100)])),
            // No page of at most 100 holds positions 150 to 249; two of 75 do.
            ((150, 100), Some(&[(3, 75), (3, 100)])),
            // Offset 990 is below the cap: a page of 99 there reaches position 1088.
            ((999, 1), Some(&[(11, 99)])),
            ((1050, 30), Some(&[(11, 99)])),
            ((900, 189), Some(&[(10, 100), (11, 99)])),
            ((1089, 1), None),
        ];
        for ((start, len), want) in table {
            assert_eq!(
                range(&hub, start, len),
                want.map(<[_]>::to_vec),
                "{start} {len}"
            );
        }
        assert_eq!(
            range(&Geometry::new(1000, 1), 7, 3),
            Some(vec![(8, 1), (9, 1), (10, 1)])
        );
        // Every position a page can start below the cap and hold is reachable, no other.
        assert_eq!(Geometry::new(1000, 100).furthest.len(), 1089);
        assert_eq!(Geometry::new(2, 1).furthest.len(), 2);
        assert!(Geometry::new(0, 100).furthest.is_empty());
    }

    fn counted(newer: usize, older: usize, newer_tied: usize, older_tied: usize) -> Counted {
        Counted {
            newer,
            older,
            newer_tied,
            older_tied,
            ..Counted::default()
        }
    }

    /// How many pages `block` reads from each end.
    fn ends(pages: &[(bool, u32, u32)]) -> (usize, usize) {
        let oldest = pages.iter().filter(|p| p.0).count();
        (pages.len() - oldest, oldest)
    }

    #[test]
    fn a_block_longer_than_one_view_is_read_from_both_ends() {
        let hub = Geometry::new(1000, 100);
        // (counted, span, margin) -> pages from the newest end, from the oldest
        let table = [
            // Fits below the cap newest first: one end.
            ((counted(0, 0, 0, 0), 950, 0), Some((10, 0))),
            // Newest first it starts too deep: oldest first.
            ((counted(1080, 0, 0, 0), 50, 0), Some((0, 1))),
            // 1500 positions: 15 pages, some from each end.
            ((counted(0, 0, 0, 0), 1500, 0), Some((5, 10))),
            // The parts must overlap by 12 (the largest tie): a page more, and with it as much
            // overlap as 16 pages give.
            ((counted(0, 0, 0, 0), 1500, 12), Some((6, 10))),
            // More than both ends reach.
            ((counted(0, 0, 0, 0), 2179, 0), None),
            ((counted(0, 0, 0, 0), 2178, 0), Some((11, 11))),
            // Five tags of the oldest view are tied with its last: newest first they may come
            // before missing ones, so from that end the block is five longer (11 pages); from
            // the oldest end it is not (10).
            ((counted(10, 0, 0, 5), 990, 0), Some((0, 10))),
            ((counted(10, 0, 0, 0), 990, 0), Some((10, 0))),
        ];
        for ((counted, span, margin), want) in table {
            assert_eq!(
                hub.block(&counted, span, margin).as_deref().map(ends),
                want,
                "{counted:?} {span} {margin}"
            );
        }
        // Each end's pages are in order, and reach the block.
        let pages = hub.block(&counted(0, 0, 0, 0), 1500, 12).unwrap();
        assert_eq!(&pages[..2], [(false, 1, 100), (false, 2, 100)]);
        assert_eq!(pages[6..8], [(true, 1, 100), (true, 2, 100)]);
        assert_eq!(pages[15], (true, 10, 100));
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

    #[test]
    fn a_view_reaching_one_missing_tag_per_page_loses_to_asking_by_name() {
        // Depth 2, page size 1: newest view `ab9`,`cd8`; oldest view `ab1`,`cd2`; `ab` and `cd`
        // missing between them. Page 2 of `ab` or `cd` would reach each, but a page for one
        // tag costs what asking for it by name does, which no tie can shift.
        let plan = plan_cover(
            &names(&["ab9", "cd8", "ab", "cd", "ab1", "cd2"]),
            &stored(&[("ab9", "9"), ("cd8", "8"), ("ab1", "1"), ("cd2", "2")]),
            &|_| false,
            2,
            1,
        );
        assert_eq!(plan.missing, 2);
        assert!(plan.pages.is_empty());
        assert_eq!(plan.unreachable, ["ab", "cd"]);
    }

    #[test]
    fn the_order_whose_range_fits_below_the_cap_is_chosen() {
        // Depth 3, pages of up to 4: `a` has three tags in the newest view, so its missing two
        // are at positions 3 and 4, and no page starting below the cap holds 4; oldest first they
        // come after one tag (a-2): positions 1 and 2, page 1 of 4. (The newest view's last tag,
        // a-7, may be tied with missing ones, so oldest first the block is one longer: 1 to 3,
        // still in that page.)
        let names = names(&[
            "a-9", "a-8", "a-7", "b-6", "a-m", "a-n", "b-1", "a-2", "b-3",
        ]);
        let stored = stored(&[
            ("a-9", "9"),
            ("a-8", "8"),
            ("a-7", "7"),
            ("b-6", "6"),
            ("b-1", "1"),
            ("a-2", "2"),
            ("b-3", "3"),
        ]);
        let plan = plan_cover(&names, &stored, &|_| false, 3, 4);
        assert_eq!(plan.missing, 2);
        assert_eq!(plan.pages, [sized("a", true, 1, 4)]);
        assert!(plan.unreachable.is_empty());
    }

    /// Depth 4, pages of up to 3: newest view ab-9, cd-8, cd-7, ef-6; oldest view ab-1, cd-2,
    /// cd-3, ef-4; missing ab-m, ab-n, cd-p, cd-q.
    fn between() -> (Vec<String>, Vec<StoredTag>) {
        (
            names(&[
                "ab-9", "cd-8", "cd-7", "ef-6", "ab-m", "ab-n", "cd-p", "cd-q", "ab-1", "cd-2",
                "cd-3", "ef-4",
            ]),
            stored(&[
                ("ab-9", "9"),
                ("cd-8", "8"),
                ("cd-7", "7"),
                ("ef-6", "6"),
                ("ab-1", "1"),
                ("cd-2", "2"),
                ("cd-3", "3"),
                ("ef-4", "4"),
            ]),
        )
    }

    #[test]
    fn missing_tags_are_reached_at_their_exact_pages() {
        let (names, stored) = between();
        let plan = plan_cover(&names, &stored, &|_| false, 4, 3);
        assert_eq!(plan.missing, 4);
        // `ab`: positions 1 and 2 newest first (page 1 of 3); `cd`: 2 and 3 (page 2 of 2).
        assert_eq!(
            plan.pages,
            [sized("ab", false, 1, 3), sized("cd", false, 2, 2)]
        );
        assert!(plan.unreachable.is_empty());
    }

    #[test]
    fn tags_between_with_unknown_places_widen_the_range() {
        // ab-5 was read by an earlier round: its place among the missing is unknown, so the
        // block of `ab` covers three positions (1 to 3: two pages), which costs what asking for
        // its two missing tags by name does; `cd` is unchanged.
        let (mut names, mut stored) = between();
        names.push("ab-5".into());
        stored.push(StoredTag {
            name: "ab-5".into(),
            updated: Some("5".into()),
        });
        let plan = plan_cover(&names, &stored, &|_| false, 4, 3);
        assert_eq!(plan.missing, 4);
        assert_eq!(plan.pages, [sized("cd", false, 2, 2)]);
        assert_eq!(plan.unreachable, ["ab-m", "ab-n"]);
        // A skipped name's place is unknown too.
        let (mut names, stored) = between();
        names.push("ab-bad!".into());
        let plan = plan_cover(&names, &stored, &|n| n == "ab-bad!", 4, 3);
        assert_eq!(plan.pages, [sized("cd", false, 2, 2)]);
        assert_eq!(plan.unreachable, ["ab-m", "ab-n"]);
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
    fn a_name_no_view_reaches_for_less_than_a_page_is_asked_for_by_name() {
        // Depth 1: `a` and `b` each show a stored tag first in both orders, so neither fits;
        // the full name `a-b` is a view of that one tag: a page for one tag, no cheaper than
        // asking for it by name.
        let names = names(&["b-a", "a-b", "a-c-b"]);
        let stored = stored(&[("b-a", "9"), ("a-c-b", "1")]);
        let plan = plan_cover(&names, &stored, &|_| false, 1, 1);
        assert!(plan.pages.is_empty());
        assert_eq!(plan.unreachable, ["a-b"]);
        // Its full name is part of stored names at both ends: no view reaches it at all.
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
        let (names, mut stored) = between();
        // A tag deleted since: Hub's views no longer show it.
        stored.push(StoredTag {
            name: "ab-99".into(),
            updated: Some("99".into()),
        });
        let plan = plan_cover(&names, &stored, &|_| false, 4, 3);
        assert_eq!(
            plan.pages,
            [sized("ab", false, 1, 3), sized("cd", false, 2, 2)]
        );
    }
}
