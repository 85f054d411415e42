//! The parity fixtures (`inference-node/tests/data/dit-parity`), shared by the sampler parity
//! tests here and the root crate's `refrain sample` test (which includes this file by path).

use std::path::{Path, PathBuf};

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("inference-node/tests/data/dit-parity").is_dir())
        .expect("the workspace holds inference-node/tests/data/dit-parity")
        .join("inference-node/tests/data/dit-parity")
}

/// The fixtures' DiT graph, unpacked once from the committed `dit.onnx.gz` (gzipped to keep
/// the repository's files small) into the target folder; written to a temporary file and
/// renamed, so tests running at once never read a half-written graph.
pub fn fixture_dit() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dit-parity.onnx");
    if !path.is_file() {
        let packed = std::fs::File::open(fixtures().join("dit.onnx.gz")).expect("dit.onnx.gz");
        let mut graph = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(packed), &mut graph)
            .expect("dit.onnx.gz unpacks");
        let dir = path.parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let mut part = tempfile::NamedTempFile::new_in(dir).unwrap();
        std::io::Write::write_all(&mut part, &graph).unwrap();
        part.persist(&path).unwrap();
    }
    path
}
