//! The sampler loop that keeps the latent on the device: with IO binding, the CFG batched into
//! one DiT call of 2B rows and the Euler solver, each step is the DiT then the update graph
//! ([`super::step`]), both bound to device buffers. Per step only the time (2B values) and `dt`
//! (one value) go up; the latent and the velocity stay where the DiT computes them, and the
//! final latent comes down once, after the last step.
//!
//! Buffers (allocated once, on the device's own allocator): `v` `[2B, N, 64]`, the DiT's
//! output and the update graph's input; two latents `[2B, N, 64]` that the update writes in
//! turn (step k reads one, writes the other, and the next DiT call reads what it wrote). The
//! start latent is a host tensor bound for the first step only; the last step writes a host
//! tensor (pinned memory on CUDA), which is the result.
//!
//! Non-finite values are checked once, on the final latent: a NaN or an infinity in any step
//! stays non-finite through every later step (the update only adds and multiplies by finite
//! step sizes), so the check says the same as a check per step, only at the end.
//!
//! The other cases (separate CFG branches, the midpoint solver, no IO binding) run the host
//! update ([`super::run`]). On the CPU both give the same numbers, bit for bit.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::IoBinding;
use ort::value::{DynTensor, DynValue};

use super::runs::{element, fixed_inputs, host_allocators};
use super::{start_latent, write_floats, Dit, SampleInputs, LATENT_DIM};
use crate::error::InferenceError;
use crate::runtime::Device;
use crate::tensor::{visit_f32_unchecked, Graph};

/// The device's own allocator (host memory on the CPU).
fn device_allocator(dit: &Dit, device: Device) -> Result<Allocator, ort::Error> {
    match device.gpu() {
        None => Ok(Allocator::default()),
        Some(ordinal) => {
            let info = MemoryInfo::new(
                AllocationDevice::CUDA,
                ordinal as i32,
                AllocatorType::Device,
                MemoryType::Default,
            )?;
            Allocator::new(&dit.graph.session, info)
        }
    }
}

/// One sampler run with batched CFG and the Euler solver, the latent kept on the device.
/// Returns the final latents `[B, N, 64]`.
pub(super) fn run(
    dit: &mut Dit,
    step: &mut Graph,
    device: Device,
    inputs: &SampleInputs,
    cfg: f32,
    grid: &[f32],
    on_step: &mut dyn FnMut(u32, u32) -> Result<(), InferenceError>,
) -> Result<Vec<f32>, InferenceError> {
    let (n, b, p) = (inputs.frames, inputs.variants, dit.precision);
    let rows = 2 * b;
    let one = n * LATENT_DIM;
    let name = dit.graph.name.clone();
    let dit_err = |e| InferenceError::onnx(&name)(e);
    let step_err = |e| InferenceError::onnx(super::step::NAME)(e);
    let shape = vec![rows, n, LATENT_DIM];
    let (host_in, host_out) = host_allocators(dit, device).map_err(dit_err)?;
    let on_device = device_allocator(dit, device).map_err(dit_err)?;
    let buffer = |allocator: &Allocator| {
        DynTensor::new(allocator, element(p), shape.clone()).map(DynTensor::into_dyn)
    };

    // The start latent, both branches' rows, on the host.
    let (start, x0) = start_latent(inputs, grid, p);
    let mut first = buffer(&host_in).map_err(dit_err)?;
    for r in 0..rows {
        let v = r % b;
        write_floats(&name, &mut first, r * one, &x0[v * one..(v + 1) * one])?;
    }
    let steps = &grid[start..];
    let total = (steps.len() - 1) as u32;
    if total == 0 {
        return Ok(x0);
    }

    let mut v = buffer(&on_device).map_err(dit_err)?;
    // What the last step wrote (read by this one) and what this step writes, swapped each step.
    let mut current = buffer(&on_device).map_err(dit_err)?;
    let mut next = buffer(&on_device).map_err(dit_err)?;
    let mut last = buffer(&host_out).map_err(dit_err)?;
    let scalar = |value: f32| crate::tensor::float_tensor(super::step::NAME, p, &[1], &[value]);
    let cfg_value = scalar(cfg)?;
    let mut dt_value = scalar(0.0)?;
    let mut time = crate::tensor::float_tensor(&name, p, &[rows], &vec![0.0; rows])?;

    let fixed = fixed_inputs(dit, inputs, 0, rows)?;
    let mut dit_binding = dit.graph.session.create_binding().map_err(dit_err)?;
    for (input, value) in &fixed {
        dit_binding.bind_input(*input, value).map_err(dit_err)?;
    }
    dit_binding.bind_output("v", &mut v).map_err(dit_err)?;
    let mut step_binding = step.session.create_binding().map_err(step_err)?;
    step_binding.bind_input("v", &v).map_err(step_err)?;
    step_binding
        .bind_input("cfg", &cfg_value)
        .map_err(step_err)?;

    for (k, w) in steps.windows(2).enumerate() {
        let (t0, t1) = (w[0], w[1]);
        // The latent this step reads: the start on the host, then what the last step wrote.
        let x: &DynValue = if k == 0 { &first } else { &current };
        write_floats(&name, &mut time, 0, &vec![t0; rows])?;
        bind_step_inputs(&mut dit_binding, x, &time).map_err(dit_err)?;
        dit.graph.run_binding(&dit_binding)?;

        write_floats(super::step::NAME, &mut dt_value, 0, &[p.round(t1 - t0)])?;
        let bind = |binding: &mut IoBinding, out: &mut DynValue| -> Result<(), ort::Error> {
            binding.bind_input("x", x)?;
            binding.bind_input("dt", &dt_value)?;
            binding.bind_output("x_next", out)
        };
        let is_last = k as u32 + 1 == total;
        let out = if is_last { &mut last } else { &mut next };
        bind(&mut step_binding, out).map_err(step_err)?;
        step.run_binding(&step_binding)?;
        std::mem::swap(&mut current, &mut next);
        on_step(k as u32 + 1, total)?;
    }

    let mut x = vec![0f32; b * one];
    let finite = visit_f32_unchecked(super::step::NAME, &last, |shape, data| {
        if shape != [rows, n, LATENT_DIM] {
            return Err(InferenceError::Contract {
                graph: super::step::NAME.into(),
                message: format!("`x_next` has shape {shape:?}, expected [{rows}, {n}, 64]"),
            });
        }
        x.copy_from_slice(&data[..b * one]);
        Ok(data.iter().all(|v| v.is_finite()))
    })??;
    if finite {
        Ok(x)
    } else {
        Err(InferenceError::NonFinite(name))
    }
}

fn bind_step_inputs(
    binding: &mut IoBinding,
    x: &DynValue,
    time: &DynValue,
) -> Result<(), ort::Error> {
    binding.bind_input("x", x)?;
    binding.bind_input("time", time)
}
