//! The marketplace's side of an IP: ratings and reviews, and how the
//! catalog is searched and sorted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest review or reply, in characters.
pub const MAX_REVIEW_CHARS: usize = 4000;

/// A user's rating and review of an IP (one per user and IP; writing again
/// replaces it), with its vendor's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Review {
    pub id: i64,
    pub ip: String,
    /// The reviewing user's account name.
    pub author: String,
    /// 1 to 5.
    pub stars: u8,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reply {
    pub text: String,
    pub at: DateTime<Utc>,
}

/// `PUT /v1/ips/{ns}/{name}/review`: the caller's rating and review.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitReview {
    #[schema(minimum = 1, maximum = 5)]
    pub stars: u8,
    #[serde(default)]
    pub text: String,
}

impl SubmitReview {
    /// The review, trimmed, or what is wrong with it.
    pub fn validate(&self) -> Result<SubmitReview, String> {
        if !(1..=5).contains(&self.stars) {
            return Err(format!("stars must be 1 to 5, got {}", self.stars));
        }
        let text = self.text.trim().to_string();
        check_text("a review", &text)?;
        Ok(SubmitReview {
            stars: self.stars,
            text,
        })
    }
}

/// `POST /v1/ips/{ns}/{name}/reviews/{id}/reply`: the vendor's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitReply {
    pub text: String,
}

impl SubmitReply {
    pub fn validate(&self) -> Result<String, String> {
        let text = self.text.trim().to_string();
        if text.is_empty() {
            return Err("a reply must not be empty".into());
        }
        check_text("a reply", &text)?;
        Ok(text)
    }
}

fn check_text(what: &str, text: &str) -> Result<(), String> {
    let n = text.chars().count();
    if n > MAX_REVIEW_CHARS {
        return Err(format!(
            "{what} is at most {MAX_REVIEW_CHARS} characters; this one has {n}"
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("{what} may not contain control characters"));
    }
    Ok(())
}

/// An IP's ratings at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RatingSummary {
    /// Mean of the stars, rounded to one decimal; `None` without ratings.
    pub average: Option<f64>,
    pub count: u64,
}

impl RatingSummary {
    /// From the sum of stars and the number of ratings.
    pub fn from_sum(sum: u64, count: u64) -> RatingSummary {
        RatingSummary {
            average: (count > 0).then(|| (sum as f64 / count as f64 * 10.0).round() / 10.0),
            count,
        }
    }
}

/// What the marketplace counts of an IP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IpStats {
    pub rating: RatingSummary,
    /// Successful calls and jobs, all versions, all users.
    pub uses: u64,
    /// Distinct users who ran it.
    pub users: u64,
}

/// How the catalog is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatalogSort {
    /// Newest version first (the default).
    #[default]
    Newest,
    /// Best average rating first (unrated last), then most ratings.
    Rating,
    /// Most used first.
    Usage,
    /// By name.
    Name,
}

impl std::str::FromStr for CatalogSort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "newest" => CatalogSort::Newest,
            "rating" => CatalogSort::Rating,
            "usage" => CatalogSort::Usage,
            "name" => CatalogSort::Name,
            other => {
                return Err(format!(
                    "sort '{other}' is not one of newest, rating, usage, name"
                ))
            }
        })
    }
}

/// One catalog search: every filter must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogFilter {
    /// Words, each found in the name, summary or tags (case-insensitive).
    pub words: Vec<String>,
    pub tag: Option<String>,
    /// A device class one of the newest version's implementations targets.
    pub device: Option<String>,
    pub vendor: Option<String>,
}

impl CatalogFilter {
    pub fn new(
        q: Option<&str>,
        tag: Option<&str>,
        device: Option<&str>,
        vendor: Option<&str>,
    ) -> CatalogFilter {
        let norm = |s: Option<&str>| s.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
        CatalogFilter {
            words: q
                .unwrap_or_default()
                .split_whitespace()
                .map(|w| w.to_lowercase())
                .collect(),
            tag: norm(tag),
            device: norm(device),
            vendor: norm(vendor),
        }
    }

    /// Whether an IP with these attributes matches.
    pub fn matches(
        &self,
        ip: &str,
        summary: &str,
        tags: &[String],
        devices: &[String],
        vendor: &str,
    ) -> bool {
        let hay = format!("{ip} {summary} {}", tags.join(" ")).to_lowercase();
        self.words.iter().all(|w| hay.contains(w.as_str()))
            && self
                .tag
                .as_ref()
                .is_none_or(|t| tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
            && self
                .device
                .as_ref()
                .is_none_or(|d| devices.iter().any(|x| x.eq_ignore_ascii_case(d)))
            && self
                .vendor
                .as_ref()
                .is_none_or(|v| vendor.eq_ignore_ascii_case(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_are_checked() {
        let r = |stars, text: &str| {
            SubmitReview {
                stars,
                text: text.into(),
            }
            .validate()
        };
        assert_eq!(r(5, "  fast  ").unwrap().text, "fast");
        assert!(r(0, "").unwrap_err().contains("1 to 5"));
        assert!(r(6, "").is_err());
        assert!(r(3, &"x".repeat(MAX_REVIEW_CHARS + 1))
            .unwrap_err()
            .contains("at most"));
        assert!(r(3, "bell\u{7}").is_err());
        assert!(r(3, "two\nlines").is_ok());
        assert!(SubmitReply { text: " ".into() }.validate().is_err());
    }

    #[test]
    fn averages_round_to_one_decimal() {
        assert_eq!(RatingSummary::from_sum(0, 0).average, None);
        assert_eq!(RatingSummary::from_sum(14, 3).average, Some(4.7));
        assert_eq!(RatingSummary::from_sum(5, 1).average, Some(5.0));
    }

    #[test]
    fn filters_combine() {
        let f = CatalogFilter::new(Some("Black scholes"), None, Some("OpenCL"), None);
        let tags = vec!["finance".to_string()];
        let devices = vec!["wasm".to_string(), "opencl".to_string()];
        assert!(f.matches(
            "acme/blackscholes",
            "Black-Scholes prices",
            &tags,
            &devices,
            "acme"
        ));
        let none = CatalogFilter::new(Some("black swaption"), None, None, None);
        assert!(!none.matches("acme/blackscholes", "prices", &tags, &devices, "acme"));
        assert!(!f.matches(
            "acme/blackscholes",
            "prices",
            &tags,
            &["wasm".into()],
            "acme"
        ));
        let f = CatalogFilter::new(None, Some("finance"), None, Some("other"));
        assert!(!f.matches("acme/x", "", &tags, &devices, "acme"));
        let f = CatalogFilter::new(Some("  "), Some(""), None, Some("ACME"));
        assert!(f.matches("acme/x", "", &[], &[], "acme"));
        assert!("usage".parse::<CatalogSort>().is_ok());
        assert!("stars".parse::<CatalogSort>().is_err());
    }
}
