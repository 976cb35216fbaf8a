//! Paging: a list that callers can make grow is read a page at a time,
//! by keyset (the last item's time and id), never by offset, so that each
//! page costs the same however deep it is.

/// Where a page ends: its last item's time and id (lists are ordered by
/// time, then id). Written `MILLIS.ID` in the API.
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
    }
}
