//! Frame placement of lyric tokens: the reference `get_lrc_token` (`infer_utils.py`), which
//! training also uses (`DiffusionDataset.get_triple`).
//!
//! One token per latent frame: a line's tokens start at frame `int(t · 44100 / 2048)`, pushed
//! right when the previous line has not ended yet, and are cut at the end of the song. Inside a
//! line the full stop `.` (id 2) becomes a comma (id 1) and every line ends with `.` (id 2).
//! Only lines starting strictly before the requested length are kept, and the base model drops
//! the last kept line (train/infer parity). Frames without lyrics hold 0 (pad).
//!
//! Deviation, documented: the reference places lines in file order, so an unsorted file pushes
//! an earlier-timed line behind a later one. Refrain sorts lines by time (stable) first; for a
//! sorted file, the normal case, the result is identical.

/// Token id of the comma after the +1 shift.
pub const COMMA: i64 = 1;
/// Token id of the full stop after the +1 shift; it ends every line.
pub const FULL_STOP: i64 = 2;

/// A line ready for placement: its start time and its encoded tokens (+1 shifted ids).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedLine {
    pub line_no: usize,
    pub seconds: f64,
    pub tokens: Vec<i64>,
}

/// Where one line ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedLine {
    pub line_no: usize,
    /// `int(t · 44100 / 2048)`.
    pub requested_frame: usize,
    /// The first frame it occupies (later than requested when the previous line overflowed).
    pub start_frame: usize,
    /// One past its last frame.
    pub end_frame: usize,
    /// Tokens that did not fit before the end of the song.
    pub truncated: usize,
}

/// The frame-aligned lyric track and how every line was placed.
#[derive(Debug, Clone, PartialEq)]
pub struct LyricTrack {
    /// `frames` token ids; 0 where no lyric sounds.
    pub tokens: Vec<i64>,
    pub placed: Vec<PlacedLine>,
    /// Lines left out: `(line_no, reason)`.
    pub dropped: Vec<(usize, String)>,
}

/// The frame a timestamp falls on: `int(seconds * sample_rate / hop)`.
pub fn frame_of(seconds: f64, sample_rate: u32, hop: usize) -> usize {
    (seconds * sample_rate as f64 / hop as f64).max(0.0) as usize
}

/// Places encoded lines on `frames` frames for a song of `length_seconds` (the requested length:
/// 95 for the base model). `drop_last_line` is the base model's rule.
pub fn place(
    lines: &[EncodedLine],
    length_seconds: f64,
    frames: usize,
    drop_last_line: bool,
    sample_rate: u32,
    hop: usize,
) -> LyricTrack {
    let mut dropped = Vec::new();
    let mut kept: Vec<&EncodedLine> = Vec::with_capacity(lines.len());
    for line in lines {
        if line.seconds < length_seconds {
            kept.push(line);
        } else {
            dropped.push((
                line.line_no,
                format!(
                    "starts at {:.2} s, after the song's end ({length_seconds} s)",
                    line.seconds
                ),
            ));
        }
    }
    kept.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    if drop_last_line {
        if let Some(last) = kept.pop() {
            dropped.push((
                last.line_no,
                "the base model drops the last line (as the reference does)".into(),
            ));
        }
    }
    let mut tokens = vec![0i64; frames];
    let mut placed = Vec::with_capacity(kept.len());
    let mut last_end = 0usize;
    for line in kept {
        let mut toks: Vec<i64> = line
            .tokens
            .iter()
            .map(|&t| if t == FULL_STOP { COMMA } else { t })
            .collect();
        toks.push(FULL_STOP);
        let requested = frame_of(line.seconds, sample_rate, hop);
        let start = requested.max(last_end);
        let n = toks.len().min(frames.saturating_sub(start));
        if n > 0 {
            tokens[start..start + n].copy_from_slice(&toks[..n]);
        }
        placed.push(PlacedLine {
            line_no: line.line_no,
            requested_frame: requested,
            start_frame: start.min(frames),
            end_frame: start.min(frames) + n,
            truncated: toks.len() - n,
        });
        last_end = start + n;
    }
    dropped.sort_by_key(|d| d.0);
    LyricTrack {
        tokens,
        placed,
        dropped,
    }
}

/// Start times for plain (untimed) lyrics: line `i` of `n` at `i · length / n` seconds.
pub fn spread_evenly(count: usize, length_seconds: f64) -> Vec<f64> {
    (0..count)
        .map(|i| i as f64 * length_seconds / count as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(line_no: usize, seconds: f64, tokens: &[i64]) -> EncodedLine {
        EncodedLine {
            line_no,
            seconds,
            tokens: tokens.to_vec(),
        }
    }

    #[test]
    fn frame_mapping_truncates() {
        assert_eq!(frame_of(0.0, 44100, 2048), 0);
        assert_eq!(frame_of(1.0, 44100, 2048), 21);
        assert_eq!(frame_of(10.0, 44100, 2048), 215);
        assert_eq!(frame_of(95.0, 44100, 2048), 2045);
        assert_eq!(frame_of(-3.0, 44100, 2048), 0);
    }

    #[test]
    fn places_lines_with_full_stop_rewrite_and_terminator() {
        let t = place(
            &[line(1, 1.0, &[10, 2, 11]), line(2, 2.0, &[12])],
            95.0,
            100,
            false,
            44100,
            2048,
        );
        assert_eq!(&t.tokens[21..25], &[10, COMMA, 11, FULL_STOP]);
        assert_eq!(t.tokens[20], 0);
        assert_eq!(t.tokens[25], 0);
        assert_eq!(&t.tokens[43..45], &[12, FULL_STOP]);
        assert_eq!(t.tokens.iter().filter(|&&x| x != 0).count(), 6);
    }

    #[test]
    fn overflow_pushes_the_next_line_right() {
        let long: Vec<i64> = (10..40).collect(); // 30 tokens + '.', from frame 21 to 52
        let t = place(
            &[line(1, 1.0, &long), line(2, 2.0, &[50, 51])],
            95.0,
            200,
            false,
            44100,
            2048,
        );
        assert_eq!(t.placed[1].requested_frame, 43);
        assert_eq!(t.placed[1].start_frame, 52);
        assert_eq!(&t.tokens[52..55], &[50, 51, FULL_STOP]);
    }

    #[test]
    fn truncates_at_the_end_and_filters_by_length() {
        let t = place(
            &[
                line(1, 0.0, &[5]),
                line(2, 4.5, &[7, 8, 9, 10]),
                line(3, 5.0, &[1]),
            ],
            5.0,
            100,
            false,
            44100,
            2048,
        );
        // 4.5 s -> frame 96; 5 tokens, 4 fit.
        assert_eq!(&t.tokens[96..100], &[7, 8, 9, 10]);
        assert_eq!(t.placed[1].truncated, 1);
        assert_eq!(t.dropped.len(), 1);
        assert_eq!(t.dropped[0].0, 3);
        assert!(t.dropped[0].1.contains("after the song's end"));
    }

    #[test]
    fn base_model_drops_the_last_kept_line() {
        let lines = [
            line(1, 1.0, &[5]),
            line(2, 2.0, &[6]),
            line(3, 94.9, &[7]),
            line(4, 95.0, &[8]),
        ];
        let t = place(&lines, 95.0, 2048, true, 44100, 2048);
        assert_eq!(
            t.placed.iter().map(|p| p.line_no).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            t.dropped.iter().map(|d| d.0).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(!t.tokens.contains(&7));
    }

    #[test]
    fn unsorted_lines_are_sorted_by_time() {
        let t = place(
            &[line(1, 2.0, &[6]), line(2, 1.0, &[5])],
            95.0,
            100,
            false,
            44100,
            2048,
        );
        assert_eq!(&t.tokens[21..23], &[5, FULL_STOP]);
        assert_eq!(&t.tokens[43..45], &[6, FULL_STOP]);
    }

    #[test]
    fn line_starting_past_the_frames_is_fully_truncated() {
        let t = place(
            &[line(1, 0.0, &[9; 10]), line(2, 0.1, &[5])],
            95.0,
            8,
            false,
            44100,
            2048,
        );
        assert_eq!(t.tokens, vec![9; 8]);
        assert_eq!(t.placed[1].start_frame, 8);
        assert_eq!(t.placed[1].truncated, 2);
    }

    #[test]
    fn spreads_plain_lines() {
        assert_eq!(spread_evenly(4, 100.0), vec![0.0, 25.0, 50.0, 75.0]);
        assert!(spread_evenly(0, 95.0).is_empty());
    }
}
