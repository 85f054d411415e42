//! The CFG combination and the Euler update as an ONNX graph of their own, built in memory
//! with ONNX Runtime's model editor (`ort::editor`), so that with IO binding the latent never
//! leaves the device between sampler steps ([`super::device`]).
//!
//! Inputs, all of the DiT's float type: `x` `[2B, N, 64]` (the rows the DiT got: B
//! conditional, then B unconditional, both branches holding the same latents), `v` `[2B, N, 64]`
//! (the DiT's output for those rows), `dt` `[1]`, `cfg` `[1]`. Output `x_next` `[2B, N, 64]`:
//!
//! ```text
//! v_c, v_u = split(v)         x_c, _ = split(x)
//! g      = v_c + (v_c − v_u) · cfg
//! x'     = x_c + dt · g
//! x_next = concat(x', x')      (the next step's DiT input, both branches)
//! ```
//!
//! One ONNX operator per arithmetic operation, in the order the host update ([`super::run`])
//! computes them, so each rounds where the host rounds: in float32 as it is; in float16 each
//! operation computes in float32 and its result is cast to float16 (and back for the next
//! operation), which is what `Precision::round` does after each host operation. The results are
//! the host update's, bit for bit (tested on the CPU, in both precisions).

use ort::editor::{Graph as EditorGraph, Model, Node, Opset, ONNX_DOMAIN};
use ort::operator::Attribute;
use ort::value::{Outlet, Shape, SymbolicDimensions, ValueType};

use super::runs::element;
use super::LATENT_DIM;
use crate::error::InferenceError;
use crate::runtime::Runtime;
use crate::tensor::{Graph, Precision};

/// The graph's name in errors and timings.
pub const NAME: &str = "sampler step (built in)";

/// Operator set: `Split` with `num_outputs` needs 18.
const OPSET: u32 = 18;

/// ONNX's element types (`TensorProto.DataType`), for `Cast`.
const FLOAT: i64 = 1;
const FLOAT16: i64 = 10;

fn latents(name: &str, p: Precision) -> Outlet {
    Outlet::new(
        name,
        ValueType::Tensor {
            ty: element(p),
            shape: Shape::new([-1, -1, LATENT_DIM as i64]),
            dimension_symbols: SymbolicDimensions::new([
                "rows".to_string(),
                "frames".to_string(),
                String::new(),
            ]),
        },
    )
}

fn scalar(name: &str, p: Precision) -> Outlet {
    Outlet::new(
        name,
        ValueType::Tensor {
            ty: element(p),
            shape: Shape::new([1]),
            dimension_symbols: SymbolicDimensions::empty(1),
        },
    )
}

/// The update graph for latents of precision `p`.
pub fn model(p: Precision) -> ort::Result<Model> {
    let mut graph = EditorGraph::new()?;
    graph.set_inputs([
        latents("x", p),
        latents("v", p),
        scalar("dt", p),
        scalar("cfg", p),
    ])?;
    graph.set_outputs([latents("x_next", p)])?;
    let halves = || -> ort::Result<[Attribute; 2]> {
        Ok([
            Attribute::new("axis", 0i64)?,
            Attribute::new("num_outputs", 2i64)?,
        ])
    };
    let node = |op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<Attribute>| {
        Node::new(op, ONNX_DOMAIN, outputs[0], inputs, outputs, attributes)
    };
    let cast = |from: &str, to: &str, ty: i64| {
        node("Cast", &[from], &[to], vec![Attribute::new("to", ty)?])
    };
    // In float16 the arithmetic runs in float32 and each result is rounded to float16 and back
    // (a Cast pair), exactly as the host rounds after each operation: ONNX Runtime's CPU has
    // no float16 kernels for these operators and would otherwise run the whole chain in
    // float32 behind one pair of casts, rounding once instead of after each step.
    let f16 = p == Precision::F16;
    let wide = |name: &str| {
        if f16 {
            format!("{name}_f32")
        } else {
            name.to_string()
        }
    };
    if f16 {
        for input in ["dt", "cfg"] {
            graph.add_node(cast(input, &wide(input), FLOAT)?)?;
        }
    }
    graph.add_node(node("Split", &["v"], &["v_c", "v_u"], halves()?.into())?)?;
    graph.add_node(node("Split", &["x"], &["x_c", "x_u"], halves()?.into())?)?;
    if f16 {
        for half in ["v_c", "v_u", "x_c"] {
            graph.add_node(cast(half, &wide(half), FLOAT)?)?;
        }
    }
    // (operator, inputs, output), in the host's order.
    let ops = [
        ("Sub", ["v_c", "v_u"], "d"),
        ("Mul", ["d", "cfg"], "d_cfg"),
        ("Add", ["v_c", "d_cfg"], "g"),
        ("Mul", ["dt", "g"], "dt_g"),
        ("Add", ["x_c", "dt_g"], "x_new"),
    ];
    for (op, [a, b], out) in ops {
        if f16 {
            let raw = format!("{out}_raw");
            graph.add_node(node(op, &[&wide(a), &wide(b)], &[&raw], Vec::new())?)?;
            graph.add_node(cast(&raw, out, FLOAT16)?)?;
            if out != "x_new" {
                graph.add_node(cast(out, &wide(out), FLOAT)?)?;
            }
        } else {
            graph.add_node(node(op, &[a, b], &[out], Vec::new())?)?;
        }
    }
    graph.add_node(node(
        "Concat",
        &["x_new", "x_new"],
        &["x_next"],
        vec![Attribute::new("axis", 0i64)?],
    )?)?;
    let mut model = Model::new([Opset::new(ONNX_DOMAIN, OPSET)?])?;
    model.set_graph(graph)?;
    Ok(model)
}

/// A session of the update graph on `runtime`'s device.
pub fn session(runtime: &Runtime, p: Precision) -> Result<Graph, InferenceError> {
    let model = model(p).map_err(InferenceError::onnx(NAME))?;
    let session = runtime.session_from_model(NAME, model)?;
    Ok(Graph::new(NAME, session))
}
