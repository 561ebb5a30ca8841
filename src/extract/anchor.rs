//! Overlapping pages: offset pagination that notices when the listing shifts back under it.
//!
//! The API pages by `limit` and `offset` only. A record removed from the part of a listing
//! already read moves every later record back by one, so the next page starts one record
//! later than it should, and the record that moved across the boundary is never served: a
//! late-arriving lead lost for good, or, in a full refresh, a live lead marked deleted.
//! (Records added there move the rest forward instead: seen twice, which dedup absorbs.)
//!
//! So each page after the first is asked from the previous page's last record
//! ([`Anchor::next_offset`]), and it must start with one of the previous page's last
//! [`Anchor::TAIL`] records (records added before it move it forward, onto an earlier one).
//! When it does not, records moved back across the boundary (or more than `TAIL` were added
//! since the page before, which reading again does no harm): the page is dropped and the
//! previous page's window is read again; when that one does not start on a record read
//! already either, the listing is read again from its start ([`Anchor::check`]). Records are told apart by
//! `id`, or by their text when they have none (a malformed record). The overlap costs one
//! record per page.

/// Which record of a listing a record is: its `id`, or (when it has none a page could be
/// anchored on) a hash of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Id(i64),
    Text(u64),
}

/// The [`Key`] of a record's JSON text. Records begin with `{"id": <integer>` as the API
/// sends them, read here without a parse; anything else is parsed for its `id`.
pub fn record_key(text: &str) -> Key {
    leading_id(text.as_bytes())
        .or_else(|| {
            #[derive(serde::Deserialize)]
            struct IdOnly {
                id: i64,
            }
            serde_json::from_str::<IdOnly>(text).ok().map(|r| r.id)
        })
        .map_or_else(
            || Key::Text(xxhash_rust::xxh3::xxh3_64(text.as_bytes())),
            Key::Id,
        )
}

/// The integer of `{"id": <integer>` at the start of `b`, if that is how it starts.
fn leading_id(b: &[u8]) -> Option<i64> {
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    let expect = |i: &mut usize, s: &[u8]| -> Option<()> {
        skip_ws(i);
        b.get(*i..*i + s.len()).filter(|x| *x == s)?;
        *i += s.len();
        Some(())
    };
    expect(&mut i, b"{")?;
    expect(&mut i, b"\"id\"")?;
    expect(&mut i, b":")?;
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let start = i;
    let mut v: i64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
        i += 1;
    }
    // An integer, whole: not `12.5`, `1e3` or `"12"`, and no leading zero.
    let digits = i - start;
    if digits == 0 || (digits > 1 && b[start] == b'0') {
        return None;
    }
    match b.get(i) {
        Some(c) if c.is_ascii_whitespace() || *c == b',' || *c == b'}' => {}
        _ => return None,
    }
    Some(if negative { -v } else { v })
}

/// What to do with a page, from where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// It starts inside the previous page (or is the first): nothing was skipped.
    Anchored,
    /// Records moved back across the boundary: drop this page and read from `offset`.
    Reread { offset: u64 },
    /// The listing kept shifting: more than [`Anchor::MAX_REREADS`] re-reads.
    Unstable,
}

/// The last pages of a listing read with overlapping pages.
#[derive(Debug, Default)]
pub struct Anchor {
    /// The page handed on last.
    prev: Option<Prev>,
    /// The one before it.
    before: Option<Prev>,
    /// The offset of the re-read asked for last, until that page is checked.
    reread_at: Option<u64>,
    rereads: u32,
}

#[derive(Debug)]
struct Prev {
    offset: u64,
    keys: PageKeys,
}

/// The keys of a page's first and of its last [`Anchor::TAIL`] records: all a page is checked
/// against (keying every record of every page would cost the fetcher 5 % of an export).
#[derive(Debug, Default)]
pub struct PageKeys {
    head: Vec<Key>,
    tail: Vec<Key>,
}

impl PageKeys {
    /// The keys of a page of `n` records, record `i` being `record(i)`.
    pub fn of<'a>(n: usize, record: impl Fn(usize) -> Option<&'a str>) -> PageKeys {
        let keys = |r: std::ops::Range<usize>| r.filter_map(&record).map(record_key).collect();
        PageKeys {
            head: keys(0..n.min(Anchor::TAIL)),
            tail: keys(n.saturating_sub(Anchor::TAIL)..n),
        }
    }
}

impl Anchor {
    /// Re-reads of one listing before it is given up as unstable.
    pub const MAX_REREADS: u32 = 8;
    /// How many of a page's last records the next page may start on (and of its first, a
    /// re-read of its window): see [`PageKeys`].
    pub const TAIL: usize = 64;

    /// Where the page after one of `n` records at `offset` starts: on its last record, which
    /// the next page must begin with. (After a page of one record, nothing overlaps.)
    pub fn next_offset(offset: u64, n: usize) -> u64 {
        if n >= 2 {
            offset + n as u64 - 1
        } else {
            offset + n as u64
        }
    }

    /// Whether the page at `offset` is a re-read this anchor asked for. It may be the very
    /// page read before (the page after it was stale, not the listing shifted): no sign of a
    /// server that ignores `offset`.
    pub fn is_reread(&self, offset: u64) -> bool {
        self.reread_at == Some(offset)
    }

    /// Whether the page at `offset`, whose first record is `first` (`None`: it is empty),
    /// follows on from the pages handed on. A next page must start in the last page's tail.
    /// A re-read of the last page's window must start on a record read already: in the tail
    /// of the page before (records were added before it), or in the last page's head or tail
    /// (records were removed before it; everything up to the last page's end was read).
    pub fn check(&mut self, offset: u64, first: Option<Key>) -> Check {
        self.reread_at = None;
        let Some(prev) = &self.prev else {
            return Check::Anchored;
        };
        let seen = |keys: &[Key]| first.is_some_and(|k| keys.contains(&k));
        let anchored = offset == 0
            || if offset > prev.offset {
                seen(&prev.keys.tail)
            } else {
                seen(&prev.keys.head)
                    || seen(&prev.keys.tail)
                    || self.before.as_ref().is_some_and(|b| seen(&b.keys.tail))
            };
        if anchored {
            return Check::Anchored;
        }
        self.rereads += 1;
        if self.rereads > Self::MAX_REREADS {
            return Check::Unstable;
        }
        let from = if offset > prev.offset {
            prev.offset
        } else {
            // The last page's window, read again, starts on no record read: from the start.
            self.prev = None;
            self.before = None;
            0
        };
        self.reread_at = Some(from);
        Check::Reread { offset: from }
    }

    /// The page at `offset`, of `n` records with these `keys`, was handed on; the next one is
    /// checked against it (when they overlap: see [`Anchor::next_offset`]). A re-read of the
    /// last page's window takes its place; any other page follows it.
    pub fn handed(&mut self, offset: u64, n: usize, keys: PageKeys) {
        let page = (n >= 2 && !keys.tail.is_empty()).then_some(Prev { offset, keys });
        if self.prev.as_ref().is_none_or(|p| p.offset != offset) {
            self.before = self.prev.take();
        }
        self.prev = page;
    }

    /// Whether a page of `n` records (`limit` asked), the first keyed `first` and the last
    /// `last`, holds nothing after the previous page's last record: the end of the listing, as
    /// an empty page would be without the overlap. Either it is that record alone, or a short
    /// page that starts in the previous page's tail and ends on its last record: records added
    /// before it since (new leads at the head of a newest-first listing) moved the tail
    /// forward, and nothing follows. (Without this, such a listing is chased record by record
    /// and each page brings nothing new.)
    pub fn only_overlap(
        &self,
        n: usize,
        limit: usize,
        first: Option<Key>,
        last: Option<Key>,
    ) -> bool {
        let Some(prev) = &self.prev else {
            return false;
        };
        let prev_last = prev.keys.tail.last().copied();
        if first.is_none() || last.is_none() {
            return false;
        }
        (n == 1 && first == prev_last)
            || (n >= 2
                && n < limit
                && last == prev_last
                && first.is_some_and(|k| prev.keys.tail.contains(&k)))
    }

    /// Re-reads so far.
    pub fn rereads(&self) -> u32 {
        self.rereads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_key_is_its_id_read_with_or_without_a_parse() {
        assert_eq!(record_key(r#"{"id":1234,"streamId":42}"#), Key::Id(1234));
        assert_eq!(record_key("{ \"id\" : -7 }"), Key::Id(-7));
        assert_eq!(record_key(r#"{"streamId":42,"id":99}"#), Key::Id(99));
        assert_eq!(
            record_key(r#"{"id":9223372036854775807}"#),
            Key::Id(i64::MAX)
        );
        // Not an integer id: keyed by the text, which differs from record to record.
        for text in [
            r#"{"id":12.5}"#,
            r#"{"id":"12"}"#,
            r#"{"id":null}"#,
            r#"{"id":012}"#,
            r#"{"id":99999999999999999999}"#,
            r#"{"streamId":42}"#,
        ] {
            assert!(matches!(record_key(text), Key::Text(_)), "{text}");
        }
        assert_ne!(record_key(r#"{"a":1}"#), record_key(r#"{"a":2}"#));
    }

    fn ids(r: std::ops::Range<i64>) -> Vec<Key> {
        r.map(Key::Id).collect()
    }

    fn keys(head: Vec<Key>, tail: Vec<Key>) -> PageKeys {
        PageKeys { head, tail }
    }

    #[test]
    fn pages_overlap_by_one_record() {
        assert_eq!(Anchor::next_offset(0, 100), 99);
        assert_eq!(Anchor::next_offset(99, 100), 198);
        assert_eq!(Anchor::next_offset(5, 1), 6);
        assert_eq!(Anchor::next_offset(5, 0), 5);
    }

    #[test]
    fn a_page_starting_inside_the_previous_one_is_anchored() {
        let mut a = Anchor::default();
        assert_eq!(a.check(0, Some(Key::Id(0))), Check::Anchored);
        a.handed(0, 100, keys(ids(0..64), ids(36..100)));
        // As asked: on the previous page's last record.
        assert_eq!(a.check(99, Some(Key::Id(99))), Check::Anchored);
        // Records added before it moved the rest forward: earlier in the previous page.
        assert_eq!(a.check(99, Some(Key::Id(90))), Check::Anchored);
        assert_eq!(a.rereads(), 0);
        // The previous page's last record alone: the end.
        let id = |i| Some(Key::Id(i));
        assert!(a.only_overlap(1, 100, id(99), id(99)));
        assert!(!a.only_overlap(1, 100, id(98), id(98)));
        assert!(!a.only_overlap(2, 100, id(99), id(100)));
        // A short page from inside the previous one's tail that ends on its last record:
        // records added at the head moved the tail forward, and nothing follows it.
        assert!(a.only_overlap(3, 100, id(97), id(99)));
        // Not when something follows, when it is full (more may follow), or when it does not
        // start in the tail.
        assert!(!a.only_overlap(3, 100, id(97), id(100)));
        assert!(!a.only_overlap(100, 100, id(97), id(99)));
        assert!(!a.only_overlap(3, 100, id(7), id(99)));
        assert!(!a.only_overlap(0, 100, None, None));
    }

    #[test]
    fn a_page_starting_past_the_previous_one_is_read_again_then_from_the_start() {
        let mut a = Anchor::default();
        a.handed(0, 100, keys(ids(0..64), ids(36..100)));
        a.handed(99, 100, keys(ids(99..163), ids(135..199)));
        // Records removed before offset 198: the page starts with one never seen.
        assert_eq!(
            a.check(198, Some(Key::Id(205))),
            Check::Reread { offset: 99 }
        );
        assert!(a.is_reread(99));
        // An empty page where the previous page's last record was: removed too.
        assert_eq!(a.check(198, None), Check::Reread { offset: 99 });
        // The previous window, read again, starts on a record read (5 removed before it): it
        // takes the previous page's place, and the next page follows it.
        assert_eq!(a.check(99, Some(Key::Id(104))), Check::Anchored);
        assert!(!a.is_reread(99));
        a.handed(99, 100, keys(ids(104..168), ids(140..204)));
        assert_eq!(a.check(198, Some(Key::Id(203))), Check::Anchored);
        // The same with records added before it: it starts in the page before.
        a.handed(0, 100, keys(ids(0..64), ids(36..100)));
        a.handed(99, 100, keys(ids(99..163), ids(135..199)));
        assert_eq!(
            a.check(198, Some(Key::Id(900))),
            Check::Reread { offset: 99 }
        );
        assert_eq!(a.check(99, Some(Key::Id(90))), Check::Anchored);
        // A re-read that starts on no record read: from the start.
        a.handed(99, 100, keys(ids(90..154), ids(126..190)));
        assert_eq!(
            a.check(188, Some(Key::Id(999))),
            Check::Reread { offset: 99 }
        );
        assert_eq!(a.check(99, Some(Key::Id(998))), Check::Reread { offset: 0 });
        assert!(a.is_reread(0));
        assert_eq!(a.check(0, Some(Key::Id(400))), Check::Anchored);
        assert_eq!(a.rereads(), 5);
    }

    #[test]
    fn a_listing_that_keeps_shifting_is_given_up() {
        let mut a = Anchor::default();
        for _ in 0..Anchor::MAX_REREADS {
            a.handed(0, 100, keys(ids(0..64), ids(36..100)));
            assert!(matches!(
                a.check(99, Some(Key::Id(1000))),
                Check::Reread { .. }
            ));
        }
        a.handed(0, 100, keys(ids(0..64), ids(36..100)));
        assert_eq!(a.check(99, Some(Key::Id(1000))), Check::Unstable);
    }

    #[test]
    fn after_a_page_of_one_record_nothing_overlaps_or_is_checked() {
        let mut a = Anchor::default();
        a.handed(0, 1, keys(ids(0..1), ids(0..1)));
        assert_eq!(a.check(1, Some(Key::Id(77))), Check::Anchored);
    }
}
