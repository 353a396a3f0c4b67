//! Content sniffing: what a media source holds, told by its first bytes (magic numbers)
//! and never by its name or declared type alone. Video is MP4/QuickTime (an ISO base
//! media file opening with an `ftyp` box) or WebM/Matroska (an EBML header); images are
//! PNG, JPEG, WebP or GIF. Anything else, SVG and other text above all, is refused.
//!
//! Six signatures, checked by hand: a general detector (`infer`) would tie the accepted
//! MP4s to its list of `ftyp` brands and answer with types no provider takes.

/// Bytes of a source's start kept for sniffing and for saying what refused content is.
pub(super) const HEAD_BYTES: usize = 512;

/// A format told by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// ISO base media file (MP4, QuickTime .mov): a box of type `ftyp` first.
    IsoBmff,
    /// EBML (WebM, Matroska): `1A 45 DF A3`.
    Ebml,
    Png,
    Jpeg,
    WebP,
    Gif,
}

impl Format {
    /// How messages name it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Format::IsoBmff => "MP4/QuickTime video",
            Format::Ebml => "WebM/Matroska video",
            Format::Png => "a PNG image",
            Format::Jpeg => "a JPEG image",
            Format::WebP => "a WebP image",
            Format::Gif => "a GIF image",
        }
    }
}

/// The format `head` (a source's first bytes) opens with, if any accepted one.
pub(super) fn sniff(head: &[u8]) -> Option<Format> {
    match head {
        // Box size (4 bytes), box type `ftyp`, major brand (4 bytes).
        [_, _, _, _, b'f', b't', b'y', b'p', _, _, _, _, ..] => Some(Format::IsoBmff),
        [0x1A, 0x45, 0xDF, 0xA3, ..] => Some(Format::Ebml),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Format::Png),
        [0xFF, 0xD8, 0xFF, ..] => Some(Format::Jpeg),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Format::WebP),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Format::Gif),
        _ => None,
    }
}

/// What content that is not of an expected format looks like, for the message: a known
/// format by name, markup (SVG, HTML, XML), text, or unknown data. Never the content.
pub(super) fn describe(head: &[u8]) -> &'static str {
    if let Some(format) = sniff(head) {
        return format.name();
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|i| text[i] == b'<') {
        return "markup (SVG, HTML or XML)";
    }
    // Text: no control bytes but tab, line feed, carriage return (a cut UTF-8
    // sequence at the end of the head is still text).
    let is_text = !text.is_empty()
        && text
            .iter()
            .all(|&b| (b >= 0x20 && b != 0x7F) || matches!(b, b'\t' | b'\n' | b'\r'));
    if is_text {
        "text"
    } else {
        "data of an unknown type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_told_apart() {
        for (head, format) in [
            (
                &b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00"[..],
                Format::IsoBmff,
            ),
            (b"\x00\x00\x00\x14ftypqt  ", Format::IsoBmff),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", Format::Ebml),
            (b"\x89PNG\r\n\x1a\n\x00\x00", Format::Png),
            (b"\xff\xd8\xff\xe0\x00\x10JFIF", Format::Jpeg),
            (b"RIFF\x24\x00\x00\x00WEBPVP8 ", Format::WebP),
            (b"GIF89a\x01\x00", Format::Gif),
        ] {
            assert_eq!(sniff(head), Some(format), "{head:?}");
        }
        for head in [
            &b"ftyp"[..],
            b"\x00\x00\x00\x18ftyp",
            b"RIFF\0\0\0\0WAVE",
            b"",
        ] {
            assert_eq!(sniff(head), None, "{head:?}");
        }
    }

    #[test]
    fn refused_content_is_described_not_echoed() {
        assert_eq!(
            describe(b"\xEF\xBB\xBF  <?xml version=\"1.0\"?><svg>"),
            "markup (SVG, HTML or XML)"
        );
        assert_eq!(describe(b"root:x:0:0:root:/root:/bin/bash\n"), "text");
        assert_eq!(describe("caf\u{e9} au lait".as_bytes()), "text");
        assert_eq!(describe(b"\x00\x01\x02\x03"), "data of an unknown type");
        assert_eq!(describe(b"\x89PNG\r\n\x1a\n"), "a PNG image");
    }
}
