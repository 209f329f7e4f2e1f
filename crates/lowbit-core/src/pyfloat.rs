//! Python's `repr(float)`: the shortest string that round-trips, in fixed notation when the
//! decimal exponent is in [-4, 16) and in exponent notation (`1e-05`, `1.5e+16`) otherwise.
//! bitsandbytes writes `nested_offset` with it, and byte-identical JSON needs the same text.

pub fn repr(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into(); // json.dumps writes NaN / Infinity
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` gives a shortest round-trip digit string, but when two such strings are
    // equally close to the exact value it may pick the odd one; Python picks the correctly
    // rounded one (ties to even). Re-render with the same digit count in exact mode.
    let shortest = format!("{v:e}");
    let ndigits = shortest.split('e').next().unwrap_or("").chars().filter(|c| c.is_ascii_digit()).count();
    let e_form = format!("{v:.*e}", ndigits.saturating_sub(1));
    let (mantissa, exp) = e_form.split_once('e').expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let s = if exp >= 0 {
            let int_len = exp + 1;
            if n <= int_len {
                format!("{}{}.0", digits, "0".repeat((int_len - n) as usize))
            } else {
                format!("{}.{}", &digits[..int_len as usize], &digits[int_len as usize..])
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() == 1 { digits.clone() } else { format!("{}.{}", &digits[..1], &digits[1..]) };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::repr;

    #[test]
    fn matches_python() {
        // expected strings are what CPython 3.11 prints for repr(x)
        let cases: &[(f64, &str)] = &[
            (0.012299999594688416, "0.012299999594688416"),
            (1.0, "1.0"),
            (1e-05, "1e-05"),
            (2.5e-06, "2.5e-06"),
            (0.0001, "0.0001"),
            (123456.5, "123456.5"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (-0.5, "-0.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f32::from_bits(0x3c4985f0) as f64, "0.012299999594688416"),
            // exactly halfway between two 17-digit strings: Python rounds to even
            (0.236331939697265625, "0.23633193969726562"),
        ];
        for &(v, s) in cases {
            assert_eq!(repr(v), s, "repr({v:e})");
        }
    }
}
