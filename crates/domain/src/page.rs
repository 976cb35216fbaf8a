//! Paging: a list that callers can make grow is read a page at a time,
//! by keyset (the last item's time and id), never by offset, so that each
//! page costs the same however deep it is.

/// Where a page ends: its last item's time and id (lists are ordered by
/// time, then id). Written `MILLIS.ID` in the API. Lists ordered by a name
/// alone carry 0 as the time and the name as the id ([`Cursor::named`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The last item's time, in Unix milliseconds.
    pub at_ms: i64,
    pub id: String,
}

/// A page of a list, and where the next one starts (none: this is the
/// last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// A page read with `limit`: a full page may have a next one, which
    /// starts after its last item.
    pub fn of(items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> Cursor) -> Page<T> {
        let next = match items.last() {
            Some(last) if items.len() >= limit as usize => Some(cursor(last)),
            _ => None,
        };
        Page { items, next }
    }

    /// The page of `limit` items starting at `start` of a whole list
    /// computed in memory, in its order (for lists that are not read from
    /// one table in a stable order); it has a next page when items remain.
    pub fn cut(items: Vec<T>, start: usize, limit: u32, cursor: impl Fn(&T) -> Cursor) -> Page<T> {
        let more = items.len() > start.saturating_add(limit as usize);
        let items: Vec<T> = items.into_iter().skip(start).take(limit as usize).collect();
        let next = items.last().filter(|_| more).map(cursor);
        Page { items, next }
    }

    /// The same page with each item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

impl Cursor {
    /// The cursor of a list ordered by name alone.
    pub fn named(name: &str) -> Cursor {
        Cursor {
            at_ms: 0,
            id: name.to_string(),
        }
    }

    /// The id as a number, for lists whose ids are numbers.
    pub fn int_id(&self) -> Result<i64, String> {
        self.id.parse().map_err(|_| {
            format!(
                "'{self}' is not a cursor of this list: pass the next page's cursor of the \
                 previous page as it was"
            )
        })
    }
}

/// The most items one page holds.
pub const PAGE_MAX: u32 = 1000;
/// Items on a page unless asked.
pub const PAGE_DEFAULT: u32 = 100;

/// The page size asked for, checked.
pub fn page_limit(limit: Option<u32>) -> Result<u32, String> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        n @ 1..=PAGE_MAX => Ok(n),
        _ => Err(format!(
            "limit must be 1 to {PAGE_MAX} items a page; follow the next page's cursor for more"
        )),
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at_ms, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Cursor, String> {
        let bad = || {
            format!(
                "'{s}' is not a cursor: pass the next page's cursor of the previous page as it was"
            )
        };
        let (ms, id) = s.split_once('.').ok_or_else(bad)?;
        let at_ms = ms.parse().map_err(|_| bad())?;
        if id.is_empty() || id.len() > 512 {
            return Err(bad());
        }
        Ok(Cursor {
            at_ms,
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_say_what_to_do() {
        let c = Cursor {
            at_ms: 1_733_472_000_123,
            id: "data/reads.1.fq".into(),
        };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for bad in ["", "x", "12", "a.b", "12.", ".x"] {
            let e = bad.parse::<Cursor>().unwrap_err();
            assert!(e.contains("previous page"), "{bad}: {e}");
        }
        assert_eq!(page_limit(None), Ok(PAGE_DEFAULT));
        assert_eq!(page_limit(Some(PAGE_MAX)), Ok(PAGE_MAX));
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(PAGE_MAX + 1)).is_err());
        assert_eq!("5.42".parse::<Cursor>().unwrap().int_id(), Ok(42));
        assert!("5.x".parse::<Cursor>().unwrap().int_id().is_err());
    }

    #[test]
    fn lists_computed_in_memory_are_cut_into_pages() {
        let c = |n: &u32| Cursor::named(&n.to_string());
        let p = Page::cut((0..5).collect(), 0, 2, c);
        assert_eq!((p.items, p.next), (vec![0, 1], Some(Cursor::named("1"))));
        let p = Page::cut((0..5).collect(), 4, 2, c);
        assert_eq!((p.items, p.next), (vec![4], None));
        let p = Page::cut((0..4).collect(), 2, 2, c);
        assert_eq!((p.items, p.next), (vec![2, 3], None));
        let p = Page::cut((0..4).collect::<Vec<u32>>(), 9, 2, c);
        assert_eq!((p.items, p.next), (vec![], None));
    }
}
