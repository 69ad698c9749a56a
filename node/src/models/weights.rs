//! Model weights as bytes: float32 safetensors files decoded into the flat named tensors the
//! merge works on, and merged tensors encoded back into a safetensors file that is the same byte
//! for byte on every node.
//!
//! `safetensors::serialize` writes its header metadata from a `HashMap`, whose order varies from
//! process to process; the merged model's hash must not, so [`encode`] writes the (simple) format
//! itself: an 8-byte little-endian header length, a JSON header with keys in sorted order,
//! padded with spaces to a multiple of 8, then the tensors' little-endian data in name order.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};

/// The shape and header metadata of a weights file: two files of one architecture must have the
/// same form to be merged, and the merged file takes that form.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Form {
    /// Each tensor's shape, by name.
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// The header's `__metadata__` (for example the model spec the learning side stores there).
    pub metadata: BTreeMap<String, String>,
}

/// A decoded weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The tensors, flattened, sorted by name.
    pub tensors: Vec<(String, Vec<f32>)>,
    /// Their form.
    pub form: Form,
}

/// Why weights bytes are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// Not a safetensors file.
    #[error("the weights are not a safetensors file: {0}")]
    Format(String),
    /// A tensor of another type than float32.
    #[error("tensor `{tensor}` is {dtype}, and only float32 weights can be merged")]
    Dtype {
        /// The tensor.
        tensor: String,
        /// Its type.
        dtype: String,
    },
    /// Tensors and form do not agree (a bug of the caller, never of a peer's bytes).
    #[error("tensor `{0}` has no shape in the form, or the wrong number of values")]
    Shape(String),
}

/// Decodes a float32 safetensors file. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Decoded, WeightsError> {
    let format = |e: safetensors::SafeTensorError| WeightsError::Format(e.to_string());
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(format)?;
    let metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let file = SafeTensors::deserialize(bytes).map_err(format)?;
    let mut tensors = Vec::new();
    let mut shapes = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(WeightsError::Dtype {
                tensor: name,
                dtype: view.dtype().to_string(),
            });
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        shapes.insert(name.clone(), view.shape().to_vec());
        tensors.push((name, values));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Decoded {
        tensors,
        form: Form { shapes, metadata },
    })
}

/// Encodes `tensors` (sorted by name, as [`crate::models::merged`] produces them) in `form` as a
/// safetensors file, deterministically: the same inputs give the same bytes everywhere.
pub fn encode(tensors: &[(String, Vec<f32>)], form: &Form) -> Result<Vec<u8>, WeightsError> {
    let json = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let mut header = String::from("{");
    let mut first = true;
    let mut entry = |header: &mut String, key: &str, value: String| {
        if !first {
            header.push(',');
        }
        first = false;
        header.push_str(&json(key));
        header.push(':');
        header.push_str(&value);
    };
    if !form.metadata.is_empty() {
        let fields: Vec<String> = form
            .metadata
            .iter()
            .map(|(k, v)| format!("{}:{}", json(k), json(v)))
            .collect();
        entry(
            &mut header,
            "__metadata__",
            format!("{{{}}}", fields.join(",")),
        );
    }
    let mut sorted: Vec<&(String, Vec<f32>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut offset = 0usize;
    for (name, values) in &sorted {
        let shape = form
            .shapes
            .get(name)
            .filter(|s| s.iter().product::<usize>() == values.len())
            .ok_or_else(|| WeightsError::Shape(name.clone()))?;
        let end = offset + 4 * values.len();
        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        entry(
            &mut header,
            name,
            format!(
                "{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
                dims.join(",")
            ),
        );
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, values) in sorted {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sample() -> Vec<u8> {
        let w: Vec<u8> = [1.0f32, -2.5, 3.25, 0.0, 7.0, 8.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = [0.5f32, -0.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let tensors = vec![
            (
                "linear.weight",
                safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 3], &w).unwrap(),
            ),
            (
                "linear.bias",
                safetensors::tensor::TensorView::new(Dtype::F32, vec![2], &b).unwrap(),
            ),
        ];
        let metadata = HashMap::from([
            ("spec".to_owned(), "{\"a\":1}".to_owned()),
            ("z".to_owned(), "last".to_owned()),
        ]);
        safetensors::serialize(tensors, Some(metadata)).unwrap()
    }

    #[test]
    fn decodes_and_encodes_a_file_that_safetensors_reads_back() {
        let decoded = decode(&sample()).unwrap();
        assert_eq!(decoded.tensors[0].0, "linear.bias");
        assert_eq!(decoded.tensors[1].1, [1.0, -2.5, 3.25, 0.0, 7.0, 8.0]);
        assert_eq!(decoded.form.shapes["linear.weight"], [2, 3]);
        assert_eq!(decoded.form.metadata["z"], "last");
        let bytes = encode(&decoded.tensors, &decoded.form).unwrap();
        // Deterministic, and what safetensors itself reads back.
        assert_eq!(bytes, encode(&decoded.tensors, &decoded.form).unwrap());
        assert_eq!(decode(&bytes).unwrap(), decoded);
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(header_len % 8, 0);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_or_damaged_bytes(
            bytes in proptest::collection::vec(0u8.., 0..512),
            cut in 0usize..200,
            flip in 0usize..200,
        ) {
            let _ = decode(&bytes);
            let mut damaged = sample();
            let i = flip % damaged.len();
            damaged[i] ^= 0x5a;
            let _ = decode(&damaged);
            let _ = decode(&sample()[..cut.min(sample().len())]);
        }
    }

    #[test]
    fn refuses_garbage_other_dtypes_and_mismatched_shapes() {
        assert!(matches!(decode(b"nonsense"), Err(WeightsError::Format(_))));
        assert!(matches!(decode(&[]), Err(WeightsError::Format(_))));
        let data = [0u8; 4];
        let t = safetensors::tensor::TensorView::new(Dtype::I32, vec![1], &data).unwrap();
        let bytes = safetensors::serialize(vec![("x", t)], None).unwrap();
        assert!(matches!(decode(&bytes), Err(WeightsError::Dtype { .. })));
        let decoded = decode(&sample()).unwrap();
        let mut wrong = decoded.tensors.clone();
        wrong[0].1.push(1.0);
        assert!(matches!(
            encode(&wrong, &decoded.form),
            Err(WeightsError::Shape(_))
        ));
    }
}
