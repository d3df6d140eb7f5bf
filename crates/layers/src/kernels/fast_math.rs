//! Elementary functions in f32 written without branches or library calls, so that loops over
//! slices vectorise (the C library's `expf` and `log1pf` are one scalar call per element): the
//! softplus and ELU kernels spend most of their time here on small dense networks.

/// `e^x` in f32 without branches or library calls, so that loops over slices vectorise (the
/// C library's `expf` is one scalar call per element): Cody-Waite reduction
/// `x = n ln 2 + r`, `|r| <= ln 2 / 2`, the degree-7 minimax polynomial of the Cephes library
/// for `e^r`, and `2^n` applied as two normal powers of two so that results that underflow to
/// subnormals round correctly. Within 2 ulp of the exact value (tested against f64); `+inf`
/// above `89`, `0` below `-104`, NaN for NaN, like `f32::exp`.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    /// `1.5 * 2^23`: adding and subtracting it rounds an `|v| < 2^22` to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    /// `ln 2` split into a part with few significant bits and the rest.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-104.0, 89.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e = p * (r * r) + r + 1.0;
    // The integer n is in the low mantissa bits of `shifted` (no float-to-int conversion,
    // whose saturation checks would keep the loop scalar). 2^n = 2^a 2^b with a = floor(n / 2),
    // b = n - a, both in [-75, 64]: normal numbers. (For a NaN `x`, `e` is NaN.)
    let n = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let a = n >> 1;
    let pow2 = |k: i32| f32::from_bits((k.wrapping_add(127) as u32) << 23);
    e * pow2(a) * pow2(n - a)
}

/// `ln(1 + u)` in f32 for `u >= 0` (the softplus tail `ln(1 + e^-|z|)` has `u` in `(0, 1]`),
/// vectorisable: `w = 1 + u` is split into `2^k m` with `m` in `[sqrt(1/2), sqrt(2))` by its bits,
/// `ln m` from the Cephes minimax polynomial in `m - 1`, and the rounding of `1 + u` undone by
/// the factor `u / (w - 1)` (Goldberg's correction; `u` itself where `w` rounds to 1). Within 2
/// ulp of the exact value (tested against f64); `+inf` for `+inf`, NaN for NaN.
#[inline(always)]
pub(crate) fn ln_1p_f32(u: f32) -> f32 {
    let w = 1.0 + u;
    let bits = w.to_bits() as i32;
    // Exponent and mantissa in [1, 2); a mantissa above sqrt(2) is halved (exponent + 1).
    let mut k = (bits >> 23) - 127;
    let mut m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f80_0000) as u32);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    k += i32::from(big);
    let x = m - 1.0;
    let z = x * x;
    let mut p = 7.037_683_6e-2_f32;
    p = p * x - 1.151_461e-1;
    p = p * x + 1.167_699_9e-1;
    p = p * x - 1.242_014_1e-1;
    p = p * x + 1.424_932_3e-1;
    p = p * x - 1.666_805_8e-1;
    p = p * x + 2.000_071_4e-1;
    p = p * x - 2.499_999_4e-1;
    p = p * x + 3.333_333e-1;
    let kf = k as f32;
    let mut y = x * z * p;
    y += kf * -2.121_944_4e-4;
    y -= 0.5 * z;
    let ln_w = x + y + kf * 0.693_359_4;
    let d = w - 1.0;
    let corrected = if d == 0.0 { u } else { ln_w * (u / d) };
    // Infinity and NaN pass through the bit manipulation incorrectly: take them from `w`.
    if w.is_finite() {
        corrected
    } else {
        w
    }
}

#[cfg(test)]
mod tests {
    use super::{exp_f32, ln_1p_f32};

    /// Distance in units in the last place between two non-negative floats (their bit
    /// patterns are ordered like the values).
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    /// Against `f64::exp` rounded to f32, on four million points of the whole finite range
    /// (results from subnormal to `f32::MAX`) and on every f32 in `[-1, 1]` near a rounding
    /// step of the reduction.
    #[test]
    fn exp_f32_is_within_two_ulp() {
        let steps = 4_000_000;
        let mut worst = (0, 0.0f32);
        for i in 0..=steps {
            let x = -103.0 + 191.7 * i as f32 / steps as f32;
            let exact = (x as f64).exp() as f32;
            let d = ulps(exp_f32(x), exact);
            if d > worst.0 {
                worst = (d, x);
            }
        }
        // Around x = +-ln 2 / 2 the reduced argument changes its integer part.
        let half = std::f32::consts::LN_2 / 2.0;
        for centre in [-half, half, -1.0, 1.0] {
            let mut x = centre;
            for _ in 0..10_000 {
                x = x.next_up();
                let d = ulps(exp_f32(x), (x as f64).exp() as f32);
                if d > worst.0 {
                    worst = (d, x);
                }
            }
        }
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_f32_edges_match_the_library() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert!(exp_f32(88.7).is_finite());
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // Subnormal results: e^-100 = 3.72e-44, a few subnormal steps of 1.4e-45.
        let tiny = exp_f32(-100.0);
        assert!(tiny > 0.0 && ulps(tiny, ((-100.0f64).exp()) as f32) <= 1);
    }

    /// Against `f64::ln_1p` rounded to f32 on every scale the softplus uses (`u` from `1e-30`
    /// to 1, where the correction matters most) and beyond (up to `1e30`).
    #[test]
    fn ln_1p_f32_is_within_two_ulp() {
        let mut worst = (0, 0.0f32);
        let steps = 2_000_000;
        for i in 0..=steps {
            // log-spaced u in [1e-30, 1e30], plus a dense linear sweep of [0, 1].
            let t = i as f64 / steps as f64;
            for u in [10f64.powf(-30.0 + 60.0 * t) as f32, t as f32] {
                let exact = (u as f64).ln_1p() as f32;
                let d = ulps(ln_1p_f32(u), exact);
                if d > worst.0 {
                    worst = (d, u);
                }
            }
        }
        assert!(worst.0 <= 2, "{} ulp at u = {}", worst.0, worst.1);
        assert_eq!(ln_1p_f32(0.0), 0.0);
        assert_eq!(ln_1p_f32(f32::INFINITY), f32::INFINITY);
        assert!(ln_1p_f32(f32::NAN).is_nan());
    }
}
