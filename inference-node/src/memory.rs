//! Device memory: the node's memory limit for ONNX Runtime, and recognising the out-of-memory
//! errors ONNX Runtime reports, so the pipeline can retry with less memory instead of failing
//! the job (the sampler with a smaller DiT batch, the VAE chunked).
//!
//! The limit is the CUDA execution provider's `gpu_mem_limit` on a GPU. On the CPU it caps a
//! BFC arena registered once in the process-wide environment (`CreateAndRegisterAllocator`
//! with an `OrtArenaCfg` `max_mem`) that every session of a limited runtime shares
//! (`session.use_env_allocators`): the arena then fails an allocation past the limit exactly
//! as the CUDA arena does past `gpu_mem_limit`, which is what lets the retries be tested on a
//! machine without a GPU. Sessions of an unlimited runtime keep their own arenas.

use std::sync::Mutex;

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::AsPointer;

use crate::error::InferenceError;

/// Whether an ONNX Runtime error message reports a failed memory allocation.
///
/// Matches, conservatively, only the messages of an allocation that could not be served:
/// - the BFC arena (CPU or CUDA) past its limit: `Available memory of X is smaller than
///   requested bytes of Y`;
/// - the BFC arena when the device itself refuses: `Failed to allocate memory for requested
///   buffer of size N`;
/// - a CUDA call that ran out of device memory: `CUDA failure 2: out of memory`
///   (`cudaErrorMemoryAllocation`, e.g. `cudaMalloc` without the arena);
/// - cuBLAS and cuDNN workspace allocations: `CUBLAS_STATUS_ALLOC_FAILED`,
///   `CUDNN_STATUS_ALLOC_FAILED`;
/// - the C++ allocator on the host: `std::bad_alloc`.
///
/// Anything else (a shape error, a kernel failure, "out of memory" in free text) is not an
/// out-of-memory error: retrying it with a smaller batch would only hide a bug.
pub fn is_out_of_memory_message(message: &str) -> bool {
    const ALWAYS: [&str; 4] = [
        "Failed to allocate memory for requested buffer of size",
        "CUDA failure 2: out of memory",
        "CUBLAS_STATUS_ALLOC_FAILED",
        "CUDNN_STATUS_ALLOC_FAILED",
    ];
    if ALWAYS.iter().any(|p| message.contains(p)) {
        return true;
    }
    if message.contains("Available memory of")
        && message.contains("is smaller than requested bytes of")
    {
        return true;
    }
    message.contains("std::bad_alloc")
}

impl InferenceError {
    /// True when ONNX Runtime failed to allocate memory while running a graph
    /// ([`is_out_of_memory_message`] on its message).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, InferenceError::Onnx { source, .. } if is_out_of_memory_message(&source.to_string()))
    }
}

/// The limit of the CPU arena registered in the environment, once per process.
static CPU_ARENA: Mutex<Option<u64>> = Mutex::new(None);

/// Registers the shared CPU arena of `limit` bytes in `env` (once per process; the same limit
/// again is a no-op, a different one an error: ONNX Runtime keeps one shared allocator per
/// device).
pub(crate) fn register_cpu_arena(
    env: &ort::environment::Environment,
    limit: u64,
) -> Result<(), String> {
    let mut registered = CPU_ARENA.lock().unwrap_or_else(|e| e.into_inner());
    match *registered {
        Some(l) if l == limit => return Ok(()),
        Some(l) => {
            return Err(format!(
            "the CPU memory limit is process-wide and already {l} bytes; cannot also use {limit}"
        ))
        }
        None => {}
    }
    let info = MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Arena,
        MemoryType::Default,
    )
    .map_err(|e| e.to_string())?;
    let keys = [c"max_mem".as_ptr(), c"arena_extend_strategy".as_ptr()];
    // kSameAsRequested: the arena grows by what is asked, so the limit is what it says.
    let values = [limit as usize, 1usize];
    let api = ort::api();
    let mut cfg: *mut ort::sys::OrtArenaCfg = std::ptr::null_mut();
    // SAFETY: the key and value arrays outlive the call; `cfg` receives a new arena
    // configuration, released below after the environment has copied what it needs.
    unsafe {
        ort::Error::result_from_status((api.CreateArenaCfgV2)(
            keys.as_ptr(),
            values.as_ptr(),
            keys.len(),
            &mut cfg,
        ))
        .map_err(|e| format!("arena configuration: {e}"))?;
        let status = (api.CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), cfg);
        (api.ReleaseArenaCfg)(cfg);
        ort::Error::result_from_status(status)
            .map_err(|e| format!("registering the CPU arena: {e}"))?;
    }
    *registered = Some(limit);
    tracing::info!(limit, "CPU arena of ONNX Runtime capped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages as ONNX Runtime gives them (from 1.31.1 on this machine, and from reports of
    /// CUDA runs), and messages that must not count.
    #[test]
    fn recognises_real_out_of_memory_messages() {
        let oom = [
            // CPU arena capped at 8 MiB, ORT 1.31.1, the test bundle's VAE decoder.
            "Non-zero status code returned while running ConvTranspose node. Name:'' Status \
             Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 void* \
             onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) \
             Available memory of 2621440 is smaller than requested bytes of 33554432",
            // CUDA arena, device full.
            "Non-zero status code returned while running Mul node. Name:'Mul_8702' Status \
             Message: /workspace/onnxruntime/onnxruntime/core/framework/bfc_arena.cc:368 void* \
             onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, \
             bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested \
             buffer of size 2830172160",
            // A CUDA call without the arena.
            "D:\\a\\_work\\1\\s\\onnxruntime\\core\\providers\\cuda\\cuda_call.cc:114 \
             onnxruntime::CudaCall CUDA failure 2: out of memory ; GPU=0 ; hostname=gpu-a ; \
             file=/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_allocator.cc ; line=47 \
             ; expr=cudaMalloc((void**)&p, size);",
            "CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED ; GPU=0 ; hostname=gpu-a ; \
             expr=cublasCreate(&cublas_handle_);",
            "Non-zero status code returned while running Conv node. Status Message: \
             std::bad_alloc",
        ];
        for m in oom {
            assert!(is_out_of_memory_message(m), "{m}");
        }
        let other = [
            "Got invalid dimensions for input: x for the following indices index: 2 Got: 32 \
             Expected: 64",
            "Non-zero status code returned while running MatMul node. Status Message: \
             matmul_helper.h:142 Compute MatMul dimension mismatch",
            "CUDA failure 700: an illegal memory access was encountered ; GPU=0",
            "CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version",
            "Available memory of the host is low",
            "the model ran out of memory budget in its own words",
            "CUDNN failure 4: CUDNN_STATUS_INTERNAL_ERROR",
        ];
        for m in other {
            assert!(!is_out_of_memory_message(m), "{m}");
        }
    }
}
