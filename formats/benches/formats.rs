//! How long transcoding a whole song takes: a 95 s and a 285 s (the longest song) synthetic
//! 44.1 kHz stereo song, to MP3 and to Ogg/Opus at the default bitrates, one run each (the
//! numbers are seconds, not microseconds). Run with `cargo bench -p refrain-formats --bench
//! formats`; prints a table.

use std::time::Instant;

use refrain_formats::{transcode, AudioFormat, EncodeSettings};

const RATE: u32 = 44_100;

/// A music-like test signal: a chord whose notes change every half second, a decaying
/// percussive noise burst every beat, slightly different left and right channels.
fn synthetic_song(seconds: u32) -> Vec<u8> {
    let frames = (seconds * RATE) as usize;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::with_capacity(frames * 4 + 44));
    let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("wav writer");
    let mut noise: u32 = 0x1234_5678;
    let roots = [220.0, 246.94, 261.63, 293.66, 329.63, 349.23, 392.0];
    for i in 0..frames {
        let t = i as f64 / f64::from(RATE);
        let step = (t * 2.0) as usize;
        let root = roots[step % roots.len()];
        let chord = [1.0, 1.26, 1.5, 2.0]
            .iter()
            .map(|m| (2.0 * std::f64::consts::PI * root * m * t).sin())
            .sum::<f64>()
            / 4.0;
        noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let white = f64::from(noise >> 8) / f64::from(1u32 << 24) * 2.0 - 1.0;
        let beat = (-(t % 0.5) * 30.0).exp();
        let left = 0.45 * chord + 0.25 * beat * white;
        let right = 0.45 * chord * 0.9 + 0.25 * beat * white * 0.8;
        writer
            .write_sample((left * 32_000.0) as i16)
            .expect("sample");
        writer
            .write_sample((right * 32_000.0) as i16)
            .expect("sample");
    }
    writer.finalize().expect("finalize");
    cursor.into_inner()
}

fn main() {
    let settings = EncodeSettings::default();
    println!(
        "transcode (release, one thread), mp3 {} kbps CBR, opus {} kbps VBR",
        settings.mp3_kbps, settings.opus_kbps
    );
    println!(
        "{:>8}  {:>6}  {:>9}  {:>10}  {:>10}",
        "song", "format", "time (s)", "x realtime", "size (KiB)"
    );
    for seconds in [95u32, 285] {
        let wav = synthetic_song(seconds);
        for format in [AudioFormat::Mp3, AudioFormat::Opus] {
            let start = Instant::now();
            let out = transcode(&wav, format, &settings).expect("transcode");
            let elapsed = start.elapsed().as_secs_f64();
            println!(
                "{:>7}s  {:>6}  {:>9.2}  {:>10.1}  {:>10}",
                seconds,
                format.as_str(),
                elapsed,
                f64::from(seconds) / elapsed,
                out.len() / 1024
            );
        }
    }
}
