//! MP3 round trips: encode generated sines, decode with symphonia (an independent decoder), and
//! check the stream's format, its exact (gapless) length, and that each channel's tone comes
//! back in the right place.

mod common;

use std::io::Cursor;

use common::*;
use refrain_formats::{transcode, AudioFormat, EncodeSettings, FormatError};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// The decoded file: sample rate, planar samples, and the frame count the header announces.
struct Decoded {
    rate: u32,
    channels: Vec<Vec<f32>>,
    header_frames: Option<u64>,
}

fn decode_mp3(bytes: Vec<u8>) -> Decoded {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .expect("probe mp3");
    let track = format.default_track(TrackType::Audio).expect("audio track");
    let track_id = track.id;
    let header_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .expect("audio params")
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .expect("mp3 decoder");
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut rate = 0;
    let mut scratch = Vec::new();
    while let Some(packet) = format.next_packet().expect("read packet") {
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).expect("decode packet");
        if buf.frames() == 0 {
            continue;
        }
        rate = buf.spec().rate();
        buf.copy_to_vecs_planar::<f32>(&mut scratch);
        channels.resize(scratch.len(), Vec::new());
        for (dst, src) in channels.iter_mut().zip(&scratch) {
            dst.extend_from_slice(src);
        }
    }
    Decoded {
        rate,
        channels,
        header_frames,
    }
}

#[test]
fn stereo_sine_round_trip() {
    let (left_hz, right_hz) = (440.0, 1_000.0);
    let wav = sine_wav(44_100, &[left_hz, right_hz], 3.0);
    let mp3 = transcode(&wav, AudioFormat::Mp3, &EncodeSettings::default()).unwrap();

    // 192 kbps CBR for 3 s: 72 000 bytes of audio, give or take a frame and the Info frame.
    let expected = 192_000 / 8 * 3;
    assert!(
        (mp3.len() as i64 - expected as i64).abs() < 2_000,
        "{} bytes",
        mp3.len()
    );
    // Starts with an MPEG-1 Layer III frame header carrying the Info (CBR) tag.
    assert_eq!(mp3[0], 0xFF);
    assert_eq!(mp3[1] & 0xFE, 0xFA);
    assert!(
        mp3.windows(4).take(64).any(|w| w == b"Info"),
        "no Info tag in the first frame"
    );

    let decoded = decode_mp3(mp3);
    assert_eq!(decoded.rate, 44_100);
    assert_eq!(decoded.channels.len(), 2);
    let frames = decoded.channels[0].len();
    // Gapless: the Info/LAME tag lets the decoder drop the encoder delay and padding.
    assert!(
        frames.abs_diff(132_300) <= 1152,
        "decoded {frames} frames for 132300"
    );
    // In fact exact: LAME's delay (1105) and padding are both in the tag.
    assert_eq!(frames, 132_300);
    assert_eq!(decoded.header_frames, Some(132_300));

    for (c, (hz, other)) in [(left_hz, right_hz), (right_hz, left_hz)]
        .into_iter()
        .enumerate()
    {
        let x = &decoded.channels[c];
        assert_dominant(x, 44_100, hz, &[other], &format!("channel {c}"));
        // Same phase as the input (delay removed): away from the first and last 10 ms.
        let mid = &x[441..frames - 441];
        let corr = correlation_with_offset(mid, 441, 44_100, hz);
        assert!(corr > 0.99, "channel {c}: correlation {corr}");
    }
}

/// Correlation of `x` (which starts at frame `offset` of the stream) with the test sine.
fn correlation_with_offset(x: &[f32], offset: usize, rate: u32, freq: f64) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let y = sine_at(freq, i + offset, rate);
        xy += f64::from(v) * y;
        xx += f64::from(v) * f64::from(v);
        yy += y * y;
    }
    xy / (xx * yy).sqrt()
}

#[test]
fn mono_and_other_bitrates() {
    // Mono at 48 kHz, 56 kbps (the bitrate set through LAME's raw API) and 320 kbps.
    let wav = sine_wav(48_000, &[1_000.0], 2.0);
    for kbps in [56, 128, 320] {
        let settings = EncodeSettings {
            mp3_kbps: kbps,
            ..Default::default()
        };
        let mp3 = transcode(&wav, AudioFormat::Mp3, &settings).unwrap();
        let expected = kbps as usize * 125 * 2;
        assert!(
            mp3.len().abs_diff(expected) < expected / 20 + 1_500,
            "{kbps} kbps: {} bytes, expected about {expected}",
            mp3.len()
        );
        let decoded = decode_mp3(mp3);
        assert_eq!(decoded.rate, 48_000);
        assert_eq!(decoded.channels.len(), 1, "{kbps} kbps");
        let frames = decoded.channels[0].len();
        if kbps >= 64 {
            // Info tag present: exact length.
            assert_eq!(frames, 96_000, "{kbps} kbps");
        } else {
            // A 56 kbps frame at 48 kHz (168 bytes) is too small for the Info tag, so LAME
            // writes none: nothing is lost, but the delay and padding stay in.
            assert!(
                (96_000..=96_000 + 1105 + 1152).contains(&frames),
                "{kbps} kbps: {frames} frames"
            );
        }
        assert_dominant(
            &decoded.channels[0],
            48_000,
            1_000.0,
            &[],
            &format!("{kbps} kbps"),
        );
    }
}

#[test]
fn low_sample_rates_limit_the_bitrate() {
    let wav = sine_wav(22_050, &[500.0, 500.0], 1.0);
    // MPEG-2 at 22.05 kHz has no 192 kbps.
    let err = transcode(&wav, AudioFormat::Mp3, &EncodeSettings::default()).unwrap_err();
    assert!(
        matches!(err, FormatError::InvalidBitrate { kbps: 192, .. }),
        "{err}"
    );
    let settings = EncodeSettings {
        mp3_kbps: 64,
        ..Default::default()
    };
    let decoded = decode_mp3(transcode(&wav, AudioFormat::Mp3, &settings).unwrap());
    assert_eq!(decoded.rate, 22_050);
    assert_dominant(&decoded.channels[0], 22_050, 500.0, &[], "22.05 kHz");

    // Not an MPEG rate at all.
    let wav = sine_wav(96_000, &[500.0], 0.5);
    let err = transcode(&wav, AudioFormat::Mp3, &EncodeSettings::default()).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::UnsupportedSampleRate {
                format: AudioFormat::Mp3,
                rate: 96_000,
                ..
            }
        ),
        "{err}"
    );
}
