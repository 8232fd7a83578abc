//! Ids as lower-case hex (trace and span ids), written without allocating.

/// Fills `out` with the id's last `out.len()` hex digits.
pub fn write_hex(out: &mut [u8], mut id: u128) {
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789abcdef"[(id & 0xf) as usize];
        id >>= 4;
    }
}

/// Appends the id's last `digits` hex digits.
pub fn push_hex(out: &mut Vec<u8>, id: u128, digits: usize) {
    let at = out.len();
    out.resize(at + digits, 0);
    write_hex(&mut out[at..], id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_zero_padded_lower_case() {
        let mut out = b"x".to_vec();
        push_hex(&mut out, 0xab, 4);
        assert_eq!(out, b"x00ab");
        let mut fixed = [0u8; 2];
        write_hex(&mut fixed, 0x1ff);
        assert_eq!(&fixed, b"ff");
    }
}
