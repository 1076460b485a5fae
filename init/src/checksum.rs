//! CRC-32 (ISO-HDLC, the zlib / Ethernet / PNG polynomial) for the bundle trailer.
//!
//! The trailer guards against a garbled or mis-framed bundle, not against an
//! attacker (anyone who can write the container's stdin can also write a valid
//! checksum). A 35-line table-driven CRC keeps the static shim free of a
//! dependency for that.

/// The reflected CRC-32 polynomial.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// One entry per byte value, computed at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// An incremental CRC-32 computation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32(u32);

impl Crc32 {
    /// Starts a new checksum.
    pub(crate) fn new() -> Self {
        Crc32(!0)
    }

    /// Feeds `bytes` into the checksum.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            // The index is masked to 0..=255, so it is always in bounds.
            self.0 = TABLE[usize::from((self.0 as u8) ^ byte)] ^ (self.0 >> 8);
        }
    }

    /// The checksum of everything fed so far.
    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Crc32;

    fn crc(bytes: &[u8]) -> u32 {
        let mut c = Crc32::new();
        c.update(bytes);
        c.finish()
    }

    #[test]
    fn matches_the_standard_check_value() {
        // The catalogued check value of CRC-32/ISO-HDLC.
        assert_eq!(crc(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn the_empty_input_has_checksum_zero() {
        assert_eq!(crc(b""), 0);
    }

    #[test]
    fn incremental_updates_equal_one_update() {
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), crc(b"123456789"));
    }
}
