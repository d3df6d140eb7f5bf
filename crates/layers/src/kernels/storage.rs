//! Access to the elements of Candle CPU storages for the custom ops of `layers`: a storage
//! seen through its layout as one row-major slice, and macros that run a kernel generic over
//! the element type on f32 or f64 storages (anything else is a clear error).

use std::borrow::Cow;

use candle_core::Layout;

/// The elements of `data` seen through `layout` in row-major order, borrowed when contiguous.
pub(crate) fn elements<'a, T: Copy>(data: &'a [T], layout: &Layout) -> Cow<'a, [T]> {
    if let Some((a, b)) = layout.contiguous_offsets() {
        return Cow::Borrowed(&data[a..b]);
    }
    let (dims, strides) = (layout.dims(), layout.stride());
    let mut index = vec![0usize; dims.len()];
    let mut out = Vec::with_capacity(layout.shape().elem_count());
    for _ in 0..layout.shape().elem_count() {
        let at: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        out.push(data[layout.start_offset() + at]);
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Cow::Owned(out)
}

/// Applies a generic kernel to one f32 or f64 storage.
macro_rules! on_float {
    ($storage:expr, $layout:expr, $name:expr, |$x:ident| $body:expr) => {
        match $storage {
            candle_core::CpuStorage::F32(data) => {
                let $x = $crate::kernels::storage::elements(data, $layout);
                candle_core::CpuStorage::F32($body)
            }
            candle_core::CpuStorage::F64(data) => {
                let $x = $crate::kernels::storage::elements(data, $layout);
                candle_core::CpuStorage::F64($body)
            }
            other => candle_core::bail!(
                "{}: f32 or f64 expected, got {:?}",
                $name,
                candle_core::backend::BackendStorage::dtype(other)
            ),
        }
    };
}

/// Applies a generic kernel to two f32 or two f64 storages.
macro_rules! on_float2 {
    ($s1:expr, $l1:expr, $s2:expr, $l2:expr, $name:expr, |$a:ident, $b:ident| $body:expr) => {
        match ($s1, $s2) {
            (candle_core::CpuStorage::F32(d1), candle_core::CpuStorage::F32(d2)) => {
                let ($a, $b) = (
                    $crate::kernels::storage::elements(d1, $l1),
                    $crate::kernels::storage::elements(d2, $l2),
                );
                candle_core::CpuStorage::F32($body)
            }
            (candle_core::CpuStorage::F64(d1), candle_core::CpuStorage::F64(d2)) => {
                let ($a, $b) = (
                    $crate::kernels::storage::elements(d1, $l1),
                    $crate::kernels::storage::elements(d2, $l2),
                );
                candle_core::CpuStorage::F64($body)
            }
            (a, b) => candle_core::bail!(
                "{}: two f32 or two f64 tensors expected, got {:?} and {:?}",
                $name,
                candle_core::backend::BackendStorage::dtype(a),
                candle_core::backend::BackendStorage::dtype(b)
            ),
        }
    };
}

/// Applies a generic kernel to three f32 or three f64 storages (`$what` names them in the
/// error, e.g. "input, kernel and bias").
macro_rules! on_float3 {
    (
        ($s1:expr, $l1:expr), ($s2:expr, $l2:expr), ($s3:expr, $l3:expr),
        $name:expr, $what:expr, |$a:ident, $b:ident, $c:ident| $body:expr
    ) => {
        match ($s1, $s2, $s3) {
            (
                candle_core::CpuStorage::F32(d1),
                candle_core::CpuStorage::F32(d2),
                candle_core::CpuStorage::F32(d3),
            ) => {
                let ($a, $b, $c) = (
                    $crate::kernels::storage::elements(d1, $l1),
                    $crate::kernels::storage::elements(d2, $l2),
                    $crate::kernels::storage::elements(d3, $l3),
                );
                candle_core::CpuStorage::F32($body)
            }
            (
                candle_core::CpuStorage::F64(d1),
                candle_core::CpuStorage::F64(d2),
                candle_core::CpuStorage::F64(d3),
            ) => {
                let ($a, $b, $c) = (
                    $crate::kernels::storage::elements(d1, $l1),
                    $crate::kernels::storage::elements(d2, $l2),
                    $crate::kernels::storage::elements(d3, $l3),
                );
                candle_core::CpuStorage::F64($body)
            }
            (a, b, c) => candle_core::bail!(
                "{}: {} must all be f32 or all f64, got {:?}, {:?} and {:?}",
                $name,
                $what,
                candle_core::backend::BackendStorage::dtype(a),
                candle_core::backend::BackendStorage::dtype(b),
                candle_core::backend::BackendStorage::dtype(c)
            ),
        }
    };
}
