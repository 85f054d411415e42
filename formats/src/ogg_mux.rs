//! The Ogg side of Ogg Opus (RFC 7845): the two header packets (OpusHead, OpusTags) on their own
//! pages, then the audio packets packed into pages with granule positions, the last page flagged
//! end-of-stream and carrying the trimmed final granule position.
//!
//! Kept apart from the encoder so that the container rules (page boundaries, granule positions)
//! can be read and checked on their own. The `ogg` crate writes the pages and their checksums;
//! this module decides where pages end: after at most [`MAX_PACKETS_PER_PAGE`] packets (about
//! one second, as opusenc does, so a seek lands close to its target) and before a packet would
//! no longer fit whole in the page's 255 lacing values (no packet spans two pages).

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use crate::error::FormatError;
use crate::format::AudioFormat;

/// The vendor string in OpusTags.
pub(crate) const VENDOR: &str = "refrain";

/// Audio packets per page at most (50 × 20 ms = 1 s).
pub(crate) const MAX_PACKETS_PER_PAGE: usize = 50;

/// Lacing values a page holds at most.
const MAX_SEGMENTS: usize = 255;

/// Writes one logical Ogg Opus stream into memory.
pub(crate) struct OggOpusMuxer {
    writer: PacketWriter<'static, Vec<u8>>,
    serial: u32,
    /// The last packet handed in, not yet written (with its granule position): whether it ends
    /// its page depends on the packet after it.
    pending: Option<(Vec<u8>, u64)>,
    /// Lacing values used by packets already written to the current (open) page.
    page_segments: usize,
    /// Packets already written to the current page.
    page_packets: usize,
}

impl OggOpusMuxer {
    /// Starts the stream and writes its two header pages.
    ///
    /// `pre_skip` is in 48 kHz samples; `input_rate` is the original sample rate, recorded for
    /// players that want to resample back (it has no effect on decoding).
    pub fn new(
        channels: u8,
        pre_skip: u16,
        input_rate: u32,
        serial: u32,
    ) -> Result<Self, FormatError> {
        let mut writer = PacketWriter::new(Vec::with_capacity(64 * 1024));
        let head = opus_head(channels, pre_skip, input_rate);
        let tags = opus_tags();
        // Each header packet on a page of its own, granule position 0 (RFC 7845 §3).
        writer
            .write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)
            .map_err(io_error)?;
        writer
            .write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)
            .map_err(io_error)?;
        Ok(OggOpusMuxer {
            writer,
            serial,
            pending: None,
            page_segments: 0,
            page_packets: 0,
        })
    }

    /// Adds an audio packet; `granule` is the granule position after it (48 kHz samples from the
    /// start of the stream, pre-skip included).
    pub fn push(&mut self, packet: Vec<u8>, granule: u64) -> Result<(), FormatError> {
        if let Some((prev, prev_granule)) = self.pending.take() {
            let prev_segments = segments(prev.len());
            let full = self.page_packets + 1 >= MAX_PACKETS_PER_PAGE
                || self.page_segments + prev_segments + segments(packet.len()) > MAX_SEGMENTS;
            let end = if full {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.writer
                .write_packet(prev, self.serial, end, prev_granule)
                .map_err(io_error)?;
            if full {
                self.page_segments = 0;
                self.page_packets = 0;
            } else {
                self.page_segments += prev_segments;
                self.page_packets += 1;
            }
        }
        self.pending = Some((packet, granule));
        Ok(())
    }

    /// Writes the last packet on the end-of-stream page, with `final_granule` as its granule
    /// position (smaller than the samples the packets hold when the end is trimmed), and returns
    /// the file.
    pub fn finish(mut self, final_granule: u64) -> Result<Vec<u8>, FormatError> {
        let (last, _) = self.pending.take().ok_or_else(|| {
            FormatError::encoder(AudioFormat::Opus, "the stream has no audio packet")
        })?;
        self.writer
            .write_packet(
                last,
                self.serial,
                PacketWriteEndInfo::EndStream,
                final_granule,
            )
            .map_err(io_error)?;
        Ok(self.writer.into_inner())
    }
}

/// Lacing values a packet of `len` bytes takes (a packet whose length is a multiple of 255 ends
/// with a 0).
fn segments(len: usize) -> usize {
    len / 255 + 1
}

/// The identification header (RFC 7845 §5.1), channel mapping family 0 (mono or stereo).
pub(crate) fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(channels);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family
    head
}

/// The comment header (RFC 7845 §5.2): the vendor string and no user comments.
pub(crate) fn opus_tags() -> Vec<u8> {
    let mut tags = Vec::with_capacity(16 + VENDOR.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    tags.extend_from_slice(VENDOR.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes()); // user comment list length
    tags
}

fn io_error(err: std::io::Error) -> FormatError {
    FormatError::encoder(AudioFormat::Opus, format!("writing the Ogg stream: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_have_the_rfc_7845_layout() {
        let head = opus_head(2, 312, 44_100);
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[8], 1);
        assert_eq!(head[9], 2);
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), 312);
        assert_eq!(
            u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            44_100
        );
        assert_eq!(&head[16..], &[0, 0, 0]);

        let tags = opus_tags();
        assert_eq!(&tags[..8], b"OpusTags");
        assert_eq!(u32::from_le_bytes(tags[8..12].try_into().unwrap()), 7);
        assert_eq!(&tags[12..19], b"refrain");
        assert_eq!(&tags[19..], &[0, 0, 0, 0]);
    }

    /// Splits a file into (header type flags, granule position, lacing values) per page.
    fn split_pages(bytes: &[u8]) -> Vec<(u8, u64, Vec<u8>)> {
        let mut pages = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            assert_eq!(&bytes[pos..pos + 4], b"OggS");
            let flags = bytes[pos + 5];
            let granule = u64::from_le_bytes(bytes[pos + 6..pos + 14].try_into().unwrap());
            let n = bytes[pos + 26] as usize;
            let lacing = bytes[pos + 27..pos + 27 + n].to_vec();
            let body: usize = lacing.iter().map(|&l| l as usize).sum();
            pages.push((flags, granule, lacing));
            pos += 27 + n + body;
        }
        pages
    }

    #[test]
    fn pages_end_on_packet_boundaries() {
        let mut mux = OggOpusMuxer::new(2, 312, 44_100, 7).unwrap();
        // 120 packets of 600 bytes (3 lacing values each): 85 fit by segments, but the page
        // must also close after 50 packets.
        for i in 1..=120u64 {
            mux.push(vec![0x55; 600], i * 960).unwrap();
        }
        let bytes = mux.finish(120 * 960 - 500).unwrap();
        let pages = split_pages(&bytes);
        // Head, tags, then 50 + 50 + 20 packets.
        assert_eq!(pages.len(), 5);
        assert_eq!(pages[0].0, 0x02); // beginning of stream
        assert_eq!((pages[0].1, pages[1].1), (0, 0));
        assert_eq!(pages[2].1, 50 * 960);
        assert_eq!(pages[3].1, 100 * 960);
        assert_eq!(pages[4].1, 120 * 960 - 500);
        assert_eq!(pages[4].0, 0x04); // end of stream, no continuation
        for page in &pages[2..] {
            assert_eq!(page.0 & 0x01, 0, "no page continues a packet");
            assert_ne!(*page.2.last().unwrap(), 255, "every page ends a packet");
        }

        // Large packets: the segment limit closes pages first.
        let mut mux = OggOpusMuxer::new(1, 312, 48_000, 7).unwrap();
        for i in 1..=10u64 {
            mux.push(vec![0xAA; 1275], i * 960).unwrap(); // 6 lacing values
        }
        let bytes = mux.finish(10 * 960).unwrap();
        for page in &split_pages(&bytes)[2..] {
            assert!(page.2.len() <= 255);
            assert_eq!(page.0 & 0x01, 0);
        }
    }

    #[test]
    fn finishing_without_audio_is_an_error() {
        let mux = OggOpusMuxer::new(2, 312, 44_100, 1).unwrap();
        assert!(matches!(mux.finish(0), Err(FormatError::Encoder { .. })));
    }
}
