//! Ogg/Opus: the container is parsed with the `ogg` crate and checked against RFC 7845 (header
//! packets and pages, granule positions, pre-skip, end trimming, end-of-stream flag), and the
//! packets are decoded with libopus to check the tones come back, in phase, per channel.

mod common;

use std::io::Cursor;

use common::*;
use refrain_formats::{transcode, AudioFormat, EncodeSettings, FormatError};

/// What the checks need from a parsed Ogg Opus file.
struct Parsed {
    channels: u8,
    pre_skip: u64,
    input_rate: u32,
    /// Audio packets with the granule position of their page when they end it.
    packets: Vec<(Vec<u8>, Option<u64>)>,
    final_granule: u64,
}

/// Parses and checks the stream structure.
fn parse(bytes: &[u8]) -> Parsed {
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let head = reader.read_packet_expected().expect("OpusHead packet");
    assert!(head.first_in_stream() && head.first_in_page() && head.last_in_page());
    assert_eq!(head.absgp_page(), 0);
    let d = &head.data;
    assert_eq!(d.len(), 19);
    assert_eq!(&d[..8], b"OpusHead");
    assert_eq!(d[8], 1, "version");
    let channels = d[9];
    let pre_skip = u64::from(u16::from_le_bytes([d[10], d[11]]));
    let input_rate = u32::from_le_bytes([d[12], d[13], d[14], d[15]]);
    assert_eq!(i16::from_le_bytes([d[16], d[17]]), 0, "output gain");
    assert_eq!(d[18], 0, "mapping family");

    let tags = reader.read_packet_expected().expect("OpusTags packet");
    assert!(tags.first_in_page() && tags.last_in_page());
    assert_eq!(tags.absgp_page(), 0);
    let t = &tags.data;
    assert_eq!(&t[..8], b"OpusTags");
    let vendor_len = u32::from_le_bytes(t[8..12].try_into().unwrap()) as usize;
    assert_eq!(&t[12..12 + vendor_len], b"refrain");
    assert_eq!(
        u32::from_le_bytes(t[12 + vendor_len..16 + vendor_len].try_into().unwrap()),
        0
    );
    assert_eq!(t.len(), 16 + vendor_len);

    let serial = head.stream_serial();
    let mut packets = Vec::new();
    let mut last_granule = 0u64;
    let mut ended = false;
    while let Some(p) = reader.read_packet().expect("read packet") {
        assert!(!ended, "packet after end of stream");
        assert_eq!(p.stream_serial(), serial);
        let granule = if p.last_in_page() {
            let g = p.absgp_page();
            assert!(
                g >= last_granule,
                "granule positions go back: {g} < {last_granule}"
            );
            last_granule = g;
            Some(g)
        } else {
            None
        };
        ended = p.last_in_stream();
        packets.push((p.data, granule));
    }
    assert!(ended, "no end-of-stream flag on the last page");
    assert!(!packets.is_empty());
    Parsed {
        channels,
        pre_skip,
        input_rate,
        final_granule: last_granule,
        packets,
    }
}

/// Decodes every packet at 48 kHz and applies pre-skip and end trimming; returns interleaved
/// samples.
fn decode(parsed: &Parsed) -> Vec<f32> {
    let ch = if parsed.channels == 2 {
        opus::Channels::Stereo
    } else {
        opus::Channels::Mono
    };
    let n = usize::from(parsed.channels);
    let mut decoder = opus::Decoder::new(48_000, ch).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0f32; 5760 * n];
    for (packet, _) in &parsed.packets {
        let frames = decoder.decode_float(packet, &mut buf, false).unwrap();
        assert_eq!(frames, 960, "every packet is 20 ms");
        out.extend_from_slice(&buf[..frames * n]);
    }
    let total = out.len() / n;
    assert!(parsed.final_granule as usize <= total);
    out.truncate(parsed.final_granule as usize * n);
    out.drain(..parsed.pre_skip as usize * n);
    out
}

#[test]
fn stereo_sine_round_trip() {
    let (left_hz, right_hz) = (440.0, 1_000.0);
    let wav = sine_wav(44_100, &[left_hz, right_hz], 3.0);
    let ogg = transcode(&wav, AudioFormat::Opus, &EncodeSettings::default()).unwrap();
    let parsed = parse(&ogg);
    assert_eq!(parsed.channels, 2);
    assert_eq!(parsed.input_rate, 44_100);
    // libopus's lookahead for the audio application: 6.5 ms.
    assert_eq!(parsed.pre_skip, 312);

    // Granule positions: 960 per packet (20 ms), pre-skip included from the start; the final
    // one is pre-skip + the 48 kHz length, which trims the padding of the last packet (less
    // than one frame).
    let n48 = (3.0f64 * 48_000.0).round() as u64;
    assert_eq!(parsed.final_granule, parsed.pre_skip + n48);
    let packets = parsed.packets.len() as u64;
    assert!(packets * 960 >= parsed.final_granule);
    assert!((packets - 1) * 960 < parsed.final_granule);
    for (i, (_, granule)) in parsed.packets.iter().enumerate() {
        if let Some(g) = granule {
            if i + 1 < parsed.packets.len() {
                assert_eq!(*g, (i as u64 + 1) * 960, "packet {i}");
            }
        }
    }
    // Pages of about a second at most: more than one audio page for 3 s.
    assert!(parsed.packets.iter().filter(|p| p.1.is_some()).count() >= 3);

    // About 128 kbps.
    let kbps = ogg.len() as f64 * 8.0 / 3.0 / 1000.0;
    assert!((80.0..180.0).contains(&kbps), "{kbps} kbps");

    let decoded = decode(&parsed);
    assert_eq!(decoded.len(), n48 as usize * 2);
    let chans = deinterleave(&decoded, 2);
    for (c, (hz, other)) in [(left_hz, right_hz), (right_hz, left_hz)]
        .into_iter()
        .enumerate()
    {
        assert_dominant(&chans[c], 48_000, hz, &[other], &format!("channel {c}"));
        // In phase with the original: pre-skip and the resampler's delay are both removed.
        let corr = correlation_with_sine(&chans[c], 48_000, hz);
        assert!(corr > 0.98, "channel {c}: correlation {corr}");
    }
}

#[test]
fn mono_resampled_and_native_rates() {
    for (rate, hz) in [(22_050u32, 700.0), (48_000, 700.0), (16_000, 300.0)] {
        let wav = sine_wav(rate, &[hz], 1.5);
        let settings = EncodeSettings {
            opus_kbps: 64,
            ..Default::default()
        };
        let ogg = transcode(&wav, AudioFormat::Opus, &settings).unwrap();
        let parsed = parse(&ogg);
        assert_eq!(parsed.channels, 1);
        assert_eq!(parsed.input_rate, rate);
        let frames = (1.5 * f64::from(rate)).round() as u64;
        let n48 = (frames * 48_000).div_ceil(u64::from(rate));
        assert_eq!(parsed.final_granule, parsed.pre_skip + n48, "{rate} Hz");
        let decoded = decode(&parsed);
        assert_eq!(decoded.len() as u64, n48);
        assert_dominant(&decoded, 48_000, hz, &[], &format!("{rate} Hz"));
        let corr = correlation_with_sine(&decoded, 48_000, hz);
        assert!(corr > 0.95, "{rate} Hz: correlation {corr}");
    }
}

#[test]
fn very_short_input_still_makes_a_valid_stream() {
    // One sample frame: one packet, the final granule trims everything but that sample.
    let wav = wav_from_f32(44_100, 2, &[0.25, -0.25]);
    let ogg = transcode(&wav, AudioFormat::Opus, &EncodeSettings::default()).unwrap();
    let parsed = parse(&ogg);
    assert_eq!(parsed.packets.len(), 1);
    // ceil(1 * 48000 / 44100) = 2 samples at 48 kHz.
    assert_eq!(parsed.final_granule, parsed.pre_skip + 2);
    assert_eq!(decode(&parsed).len(), 4);
}

#[test]
fn unsupported_rate_is_an_error() {
    let wav = sine_wav(4_000, &[200.0], 0.5);
    let err = transcode(&wav, AudioFormat::Opus, &EncodeSettings::default()).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::UnsupportedSampleRate {
                format: AudioFormat::Opus,
                rate: 4_000,
                ..
            }
        ),
        "{err}"
    );
}
