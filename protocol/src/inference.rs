//! Inference settings that the service's configuration names and an inference node's pipeline
//! uses. Here, once, because the orchestrator (which links no ONNX Runtime) reads them from
//! `refrain.toml` and the inference crate's sampler acts on them.

use serde::{Deserialize, Serialize};

/// How the two classifier-free guidance branches (conditional and unconditional) are
/// evaluated at each sampler step (`inference.cfg_mode`, `--cfg-mode`). The results are the
/// same; speed and memory differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CfgMode {
    /// One batch of 2B when the graph's batch axis is dynamic, else two runs.
    #[default]
    Auto,
    /// Always one DiT run with both branches as a batch of 2B.
    Batched,
    /// Always two runs of B (the reference's way).
    Separate,
    /// 2B runs of one row: each variant and branch alone (the least memory).
    Single,
}

impl std::str::FromStr for CfgMode {
    type Err = String;

    /// `auto`, `batched`, `separate` or `single`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(CfgMode::Auto),
            "batched" => Ok(CfgMode::Batched),
            "separate" => Ok(CfgMode::Separate),
            "single" => Ok(CfgMode::Single),
            _ => Err(format!(
                "expected auto, batched, separate or single, not {s:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CfgMode;
    use serde::Deserialize;

    #[test]
    fn the_command_line_and_the_config_file_spell_it_alike() {
        for mode in [
            CfgMode::Auto,
            CfgMode::Batched,
            CfgMode::Separate,
            CfgMode::Single,
        ] {
            let name = format!("{mode:?}").to_lowercase();
            assert_eq!(name.parse::<CfgMode>(), Ok(mode));
            let toml_value =
                serde::de::value::StrDeserializer::<serde::de::value::Error>::new(&name);
            assert_eq!(CfgMode::deserialize(toml_value), Ok(mode));
        }
        assert!("fast".parse::<CfgMode>().unwrap_err().contains("single"));
    }
}
