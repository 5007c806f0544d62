//! `Range: bytes=…` requests (RFC 9110, section 14), for resumed and parallel blob and
//! package downloads. One range is served; a request for several ranges, or a header this
//! parser does not understand, is answered with the whole content, which the RFC allows.

/// What a `Range` header asks of content of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything with 200.
    Full,
    /// Bytes `start..=end` (both inclusive, `end < length`): send them with 206.
    Partial { start: u64, end: u64 },
    /// A well-formed range that lies outside the content: 416.
    Unsatisfiable,
}

impl RangeRequest {
    /// Interprets the value of a `Range` header (`None`: no header) for content of
    /// `length` bytes.
    pub fn parse(header: Option<&str>, length: u64) -> RangeRequest {
        let Some(header) = header else {
            return RangeRequest::Full;
        };
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return RangeRequest::Full;
        };
        if spec.contains(',') {
            return RangeRequest::Full;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return RangeRequest::Full;
        };
        let number = |text: &str| -> Option<u64> {
            let text = text.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse().ok()
        };
        match (first.trim().is_empty(), number(first), number(last)) {
            // `bytes=-N`: the last N bytes.
            (true, _, Some(suffix)) => {
                if suffix == 0 || length == 0 {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Partial {
                        start: length.saturating_sub(suffix),
                        end: length - 1,
                    }
                }
            }
            // `bytes=A-` or `bytes=A-B`.
            (false, Some(start), last_position) => {
                if last.trim().is_empty() || last_position.is_some() {
                    let end = last_position.unwrap_or(u64::MAX);
                    if end < start {
                        return RangeRequest::Full;
                    }
                    if start >= length {
                        return RangeRequest::Unsatisfiable;
                    }
                    RangeRequest::Partial {
                        start,
                        end: end.min(length - 1),
                    }
                } else {
                    RangeRequest::Full
                }
            }
            _ => RangeRequest::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{self, Full, Partial, Unsatisfiable};

    fn parse(header: &str, length: u64) -> RangeRequest {
        RangeRequest::parse(Some(header), length)
    }

    #[test]
    fn single_ranges_are_served() {
        assert_eq!(parse("bytes=0-99", 1000), Partial { start: 0, end: 99 });
        assert_eq!(
            parse("bytes=100-", 1000),
            Partial {
                start: 100,
                end: 999
            }
        );
        assert_eq!(
            parse("bytes=-10", 1000),
            Partial {
                start: 990,
                end: 999
            }
        );
        // An end past the content is clipped, a suffix longer than it takes everything.
        assert_eq!(
            parse("bytes=900-5000", 1000),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(parse("bytes=-5000", 1000), Partial { start: 0, end: 999 });
        assert_eq!(parse(" bytes= 5 - 6 ", 10), Partial { start: 5, end: 6 });
    }

    #[test]
    fn ranges_outside_the_content_are_unsatisfiable() {
        assert_eq!(parse("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=1000-2000", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
    }

    #[test]
    fn other_headers_get_the_whole_content() {
        assert_eq!(RangeRequest::parse(None, 10), Full);
        for header in [
            "",
            "bytes=",
            "bytes=-",
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(parse(header, 10), Full, "{header:?}");
        }
    }
}
