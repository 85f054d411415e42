//! Cost of the Mandarin front end with its polyphone BERT: lines per second of the model alone
//! (every line distinct, so every line runs it once), of the whole Mandarin G2P on distinct lines
//! (model + segmentation + lexicon), and of the same lines again from the G2P's per-line cache.
//! The lines are the golden ones (`tests/data/mandarin/golden.json`), made distinct by a
//! numeral suffix so the cache cannot answer them.
//!
//! Needs the Mandarin data files (`tools/fetch-mandarin-data.sh`, or `REFRAIN_MANDARIN_DATA`).
//! Run: `cargo bench -p refrain-inference --bench polyphone` (REFRAIN_DEVICE=cuda for the GPU).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use refrain_inference::lyrics::g2p::mandarin::{MandarinData, PolyphoneModel};
use refrain_inference::lyrics::g2p::{G2p, MandarinG2p};
use refrain_inference::polyphone::OrtPolyphone;
use refrain_inference::runtime::{Runtime, RuntimeConfig};

const ROUNDS: usize = 5;
const NUMERALS: [&str; 5] = ["一", "二", "三", "四", "五"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("REFRAIN_MANDARIN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".mandarin-data"));
    if !dir.join("poly_bert_model.onnx").is_file() {
        eprintln!(
            "skipped: no polyphone model in {} (run tools/fetch-mandarin-data.sh)",
            dir.display()
        );
        return Ok(());
    }
    let device = std::env::var("REFRAIN_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()?;
    let runtime = Runtime::init(RuntimeConfig {
        device,
        ..RuntimeConfig::default()
    })?;
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("tests/data/mandarin/golden.json"),
    )?)?;
    let base: Vec<String> = golden["lines"]
        .as_array()
        .ok_or("no lines")?
        .iter()
        .filter_map(|l| l["text"].as_str())
        .filter(|t| t.chars().all(|c| !c.is_ascii_alphabetic()))
        .map(str::to_string)
        .collect();
    let rounds: Vec<Vec<String>> = NUMERALS[..ROUNDS]
        .iter()
        .map(|n| base.iter().map(|t| format!("{t}{n}")).collect())
        .collect();
    let data = MandarinData::load(&dir)?;
    let model = Arc::new(OrtPolyphone::load(
        &runtime,
        &dir.join("poly_bert_model.onnx"),
    )?);
    let poly = data.poly.as_ref().ok_or("no polyphone data")?;

    // the model alone, on each line's characters
    let inputs: Vec<Vec<i32>> = rounds
        .concat()
        .iter()
        .map(|t| {
            std::iter::once(poly.cls_id)
                .chain(
                    t.chars()
                        .map(|c| *poly.bert_vocab.get(&c.to_string()).unwrap_or(&poly.unk_id)),
                )
                .collect()
        })
        .collect();
    model.classify(&inputs[0])?; // warm-up
    let started = Instant::now();
    for ids in &inputs {
        model.classify(ids)?;
    }
    let model_rate = inputs.len() as f64 / started.elapsed().as_secs_f64();

    let g2p = MandarinG2p::new(data.clone(), Some(model as Arc<dyn PolyphoneModel>));
    g2p.phonemes("预热")?;
    let started = Instant::now();
    for line in rounds.concat() {
        g2p.phonemes(&line)?;
    }
    let g2p_rate = inputs.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for line in rounds.concat() {
        g2p.phonemes(&line)?;
    }
    let cached_rate = inputs.len() as f64 / started.elapsed().as_secs_f64();

    println!(
        "polyphone BERT on {device}, {} distinct lines of {}-{} characters",
        inputs.len(),
        base.iter().map(|t| t.chars().count()).min().unwrap_or(0),
        base.iter().map(|t| t.chars().count()).max().unwrap_or(0)
    );
    println!("| stage | lines/s |");
    println!("|---|---|");
    println!("| polyphone model alone | {model_rate:.0} |");
    println!("| Mandarin G2P, distinct lines | {g2p_rate:.0} |");
    println!("| Mandarin G2P, cached lines | {cached_rate:.0} |");
    Ok(())
}
