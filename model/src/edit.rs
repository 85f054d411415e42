//! Edit (inpainting) requests: the `edit_segments` parameter, parsed and checked at the edge
//! ([`parse_edit_segments`]) and again on the node, so both refuse the same input.

use crate::ModelError;

/// Most edit segments one request may give.
pub const MAX_EDIT_SEGMENTS: usize = 64;

/// Parses `edit_segments` JSON (`[[start, end], …]`, `-1` for song start or end).
pub fn parse_edit_segments(json: &str) -> Result<Vec<(f64, f64)>, ModelError> {
    let bad = |m: String| ModelError::InvalidRequest(format!("edit_segments: {m}"));
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let list = value
        .as_array()
        .ok_or_else(|| bad("expected a list of [start, end] pairs".into()))?;
    if list.is_empty() {
        return Err(bad("at least one [start, end] segment is needed".into()));
    }
    if list.len() > MAX_EDIT_SEGMENTS {
        return Err(bad(format!(
            "{} segments, the limit is {MAX_EDIT_SEGMENTS}",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, seg)| {
            let pair = seg
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| bad(format!("segment {i} is not a [start, end] pair")))?;
            let num = |v: &serde_json::Value| {
                v.as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(format!("segment {i} has a non-numeric bound")))
            };
            let (s, e) = (num(&pair[0])?, num(&pair[1])?);
            if (s < 0.0 && s != -1.0) || (e < 0.0 && e != -1.0) {
                return Err(bad(format!(
                    "segment {i}: bounds must be >= 0 seconds or -1"
                )));
            }
            if s != -1.0 && e != -1.0 && e <= s {
                return Err(bad(format!("segment {i}: end {e} is not after start {s}")));
            }
            Ok((s, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_segments_parse_and_validate() {
        assert_eq!(
            parse_edit_segments("[[-1, 25], [50.5, -1]]").unwrap(),
            vec![(-1.0, 25.0), (50.5, -1.0)]
        );
        for (bad, needle) in [
            ("", "not valid JSON"),
            ("{}", "list of [start, end]"),
            ("[]", "at least one"),
            ("[[1]]", "segment 0 is not"),
            ("[[1, \"x\"]]", "non-numeric"),
            ("[[5, 2]]", "not after start"),
            ("[[-3, 2]]", ">= 0 seconds or -1"),
        ] {
            let e = parse_edit_segments(bad).unwrap_err().to_string();
            assert!(
                e.contains("edit_segments") && e.contains(needle),
                "{bad}: {e}"
            );
        }
    }
}
