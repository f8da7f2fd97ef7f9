//! Records as plaintexts. A record of `d3·log2(p)/8` bytes (256 bytes at `d3 = 512`, `p = 16`)
//! is `d3` residues mod `p`, `log2(p)` bits each, taken from the record's bits most significant
//! first (for `p = 16`: coefficient `2j` is the high nibble of byte `j`, `2j + 1` the low one),
//! as Respire's reference code encodes records (`encode_record`/`decode_record`,
//! `src/pir/respire.rs`). One large-ring plaintext holds `d1/d3` records interleaved: record
//! `r`'s coefficient `i` is the plaintext's coefficient `(d1/d3)·i + r` (the reference's
//! `encode_db`), so rotating by `x^-r` and projecting onto the subring of degree `d3` leaves
//! record `r` alone (`project.rs`).

use super::super::PirError;

/// `log2(p)` for a plaintext modulus that is a power of two from 2 to 256.
pub fn plaintext_bits(p: u64) -> Result<u32, PirError> {
    if !(2..=256).contains(&p) || !p.is_power_of_two() {
        return Err(PirError::Param(format!(
            "plaintext modulus {p}: records need a power of two from 2 to 256"
        )));
    }
    Ok(p.trailing_zeros())
}

fn check_sizes(bytes: usize, coeffs: usize, bits: u32) -> Result<(), PirError> {
    if coeffs * bits as usize != bytes * 8 {
        return Err(PirError::Length {
            what: "record",
            expected: (coeffs * bits as usize).div_ceil(8),
            got: bytes,
        });
    }
    Ok(())
}

/// `out ← ` the residues mod `p` of `record`, `log2(p)` bits each, most significant first.
pub fn record_to_coeffs(record: &[u8], p: u64, out: &mut [u32]) -> Result<(), PirError> {
    let bits = plaintext_bits(p)?;
    check_sizes(record.len(), out.len(), bits)?;
    for (k, coeff) in out.iter_mut().enumerate() {
        let mut value = 0u32;
        for b in k * bits as usize..(k + 1) * bits as usize {
            let bit = (record[b / 8] >> (7 - b % 8)) & 1;
            value = (value << 1) | u32::from(bit);
        }
        *coeff = value;
    }
    Ok(())
}

/// `out ← ` the record whose residues mod `p` are `coeffs` (the inverse of
/// [`record_to_coeffs`]); residues are taken mod `p`.
pub fn coeffs_to_record(coeffs: &[u32], p: u64, out: &mut [u8]) -> Result<(), PirError> {
    let bits = plaintext_bits(p)?;
    check_sizes(out.len(), coeffs.len(), bits)?;
    out.fill(0);
    for (k, &coeff) in coeffs.iter().enumerate() {
        for i in 0..bits as usize {
            let bit = ((coeff >> (bits as usize - 1 - i)) & 1) as u8;
            let b = k * bits as usize + i;
            out[b / 8] |= bit << (7 - b % 8);
        }
    }
    Ok(())
}

/// The large-ring plaintext (`degree` residues mod `p`) holding `records` interleaved: record
/// `r`'s coefficient `i` at `records.len()·i + r`. All records have the same length, and
/// `records.len()` times their coefficient count is `degree`.
pub fn pack_records(records: &[&[u8]], p: u64, degree: usize) -> Result<Vec<u32>, PirError> {
    let bits = plaintext_bits(p)? as usize;
    let count = records.len();
    if count == 0 || !degree.is_multiple_of(count) {
        return Err(PirError::Param(format!(
            "{count} records in a plaintext of degree {degree}"
        )));
    }
    let per_record = degree / count;
    let mut coeffs = vec![0u32; per_record];
    let mut packed = vec![0u32; degree];
    for (r, record) in records.iter().enumerate() {
        if record.len() * 8 != per_record * bits {
            return Err(PirError::Length {
                what: "record",
                expected: per_record * bits / 8,
                got: record.len(),
            });
        }
        record_to_coeffs(record, p, &mut coeffs)?;
        for (i, &c) in coeffs.iter().enumerate() {
            packed[count * i + r] = c;
        }
    }
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_coefficients() {
        let record: Vec<u8> = (0..256u32).map(|i| (i * 37 + 11) as u8).collect();
        let mut coeffs = vec![0u32; 512];
        record_to_coeffs(&record, 16, &mut coeffs).expect("encode");
        // Most significant nibble first.
        assert_eq!(coeffs[0], u32::from(record[0] >> 4));
        assert_eq!(coeffs[1], u32::from(record[0] & 15));
        let mut back = vec![0u8; 256];
        coeffs_to_record(&coeffs, 16, &mut back).expect("decode");
        assert_eq!(back, record);
        // p = 4 and p = 256 use 2 and 8 bits per coefficient.
        let mut two = vec![0u32; 1024];
        record_to_coeffs(&record, 4, &mut two).expect("encode");
        assert_eq!(two[0], u32::from(record[0] >> 6));
        let mut eight = vec![0u32; 256];
        record_to_coeffs(&record, 256, &mut eight).expect("encode");
        assert_eq!(eight[5], u32::from(record[5]));
        coeffs_to_record(&two, 4, &mut back).expect("decode");
        assert_eq!(back, record);
    }

    #[test]
    fn packing_interleaves_records() {
        let records: Vec<Vec<u8>> = (0..4u8).map(|r| vec![r * 0x11 + 0x10; 256]).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let packed = pack_records(&refs, 16, 2048).expect("pack");
        for (j, &c) in packed.iter().enumerate() {
            let r = j % 4;
            let byte = records[r][0];
            let expected = if (j / 4) % 2 == 0 {
                byte >> 4
            } else {
                byte & 15
            };
            assert_eq!(c, u32::from(expected), "coefficient {j}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let mut coeffs = vec![0u32; 512];
        assert!(matches!(
            record_to_coeffs(&[0u8; 255], 16, &mut coeffs),
            Err(PirError::Length { .. })
        ));
        assert!(record_to_coeffs(&[0u8; 256], 15, &mut coeffs).is_err());
        assert!(record_to_coeffs(&[0u8; 256], 1 << 9, &mut coeffs).is_err());
        let mut out = vec![0u8; 100];
        assert!(coeffs_to_record(&coeffs, 16, &mut out).is_err());
        let short: &[u8] = &[0u8; 128];
        assert!(pack_records(&[short; 4], 16, 2048).is_err());
        assert!(pack_records(&[], 16, 2048).is_err());
        assert!(pack_records(&[short; 3], 16, 2048).is_err());
    }
}
