//! Where a clip's `ftyp` and `moov` boxes are, found by walking the top-level boxes of an
//! ISO BMFF / QuickTime file over whatever bytes are at hand (all of a local file, or the
//! ranges fetched of a remote one). Every count and size is bounded: at most
//! [`MAX_TOP_BOXES`] boxes, a `moov` of at most [`MAX_MOOV_BYTES`], an `ftyp` of at most
//! [`MAX_FTYP_BYTES`]; a box whose size runs past the file or below its header is refused.

use super::ProbeError;

/// Top-level boxes walked before giving up (a real clip has 3–6).
pub const MAX_TOP_BOXES: usize = 64;
/// Largest `moov` read: a 10-second clip's is a few KB, a two-hour film's a few MB.
pub const MAX_MOOV_BYTES: u64 = 16 * 1024 * 1024;
/// Largest `ftyp` read.
pub const MAX_FTYP_BYTES: u64 = 4096;

/// Bytes of a file known at some offsets: the whole file, or fetched ranges of it.
#[derive(Debug, Default)]
pub struct Sparse {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl Sparse {
    pub fn whole(bytes: Vec<u8>) -> Sparse {
        Sparse {
            chunks: vec![(0, bytes)],
        }
    }

    pub fn add(&mut self, start: u64, bytes: Vec<u8>) {
        self.chunks.push((start, bytes));
    }

    /// `len` bytes at `start`, when one chunk holds them all.
    pub fn get(&self, start: u64, len: u64) -> Option<&[u8]> {
        self.chunks.iter().find_map(|(at, bytes)| {
            let from = start.checked_sub(*at)?;
            let to = from.checked_add(len)?;
            let (from, to) = (usize::try_from(from).ok()?, usize::try_from(to).ok()?);
            bytes.get(from..to)
        })
    }
}

/// The outcome of a walk.
#[derive(Debug, PartialEq, Eq)]
pub enum Walk {
    /// The `ftyp` box (when there is one) and the `moov` box, each whole.
    Found {
        ftyp: Option<Vec<u8>>,
        moov: Vec<u8>,
    },
    /// The walk needs `len` bytes at `start` that are not at hand.
    Need { start: u64, len: u64 },
}

/// Walks the top-level boxes of a file of `total` bytes.
pub fn walk(bytes: &Sparse, total: u64) -> Result<Walk, ProbeError> {
    let mut at = 0u64;
    let mut ftyp = None;
    for _ in 0..MAX_TOP_BOXES {
        if at >= total {
            return Err(ProbeError::Malformed(
                "no moov box (the clip's metadata) in the file".into(),
            ));
        }
        let header_len = 16.min(total - at);
        let Some(head) = bytes.get(at, header_len.min(8)) else {
            return Ok(Walk::Need {
                start: at,
                len: 64 * 1024,
            });
        };
        if head.len() < 8 {
            return Err(ProbeError::Malformed(format!(
                "a box header at offset {at} is cut off by the end of the file"
            )));
        }
        let size32 = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let kind = [head[4], head[5], head[6], head[7]];
        let size = match size32 {
            0 => total - at,
            1 => {
                let Some(large) = bytes.get(at + 8, 8) else {
                    return Ok(Walk::Need {
                        start: at,
                        len: 64 * 1024,
                    });
                };
                u64::from_be_bytes(large.try_into().expect("8 bytes"))
            }
            n => n,
        };
        let min = if size32 == 1 { 16 } else { 8 };
        if size < min {
            return Err(ProbeError::Malformed(format!(
                "the {} box at offset {at} has size {size}, below its own header",
                fourcc(kind)
            )));
        }
        let end = at
            .checked_add(size)
            .filter(|e| *e <= total)
            .ok_or_else(|| {
                ProbeError::Malformed(format!(
                "the {} box at offset {at} has size {size}, past the end of the {total}-byte file",
                fourcc(kind)
            ))
            })?;
        match &kind {
            b"ftyp" => {
                if size > MAX_FTYP_BYTES {
                    return Err(ProbeError::Malformed(format!(
                        "the ftyp box has size {size}, over {MAX_FTYP_BYTES} bytes"
                    )));
                }
                match bytes.get(at, size) {
                    Some(b) => ftyp = Some(b.to_vec()),
                    None => {
                        return Ok(Walk::Need {
                            start: at,
                            len: size,
                        })
                    }
                }
            }
            b"moov" => {
                if size > MAX_MOOV_BYTES {
                    return Err(ProbeError::Malformed(format!(
                        "the moov box has size {size}, over the probe's limit of \
                         {MAX_MOOV_BYTES} bytes"
                    )));
                }
                return match bytes.get(at, size) {
                    Some(b) => Ok(Walk::Found {
                        ftyp,
                        moov: b.to_vec(),
                    }),
                    None => Ok(Walk::Need {
                        start: at,
                        len: size,
                    }),
                };
            }
            _ => {}
        }
        at = end;
    }
    Err(ProbeError::Malformed(format!(
        "no moov box among the first {MAX_TOP_BOXES} top-level boxes"
    )))
}

/// A box type for messages: its four characters when printable, else hex.
pub fn fourcc(kind: [u8; 4]) -> String {
    if kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(&kind).into_owned()
    } else {
        format!("0x{}", hex::encode(kind))
    }
}
