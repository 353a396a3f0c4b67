//! How large a request body each protocol takes: the media sizes the providers document,
//! carried the way each provider takes them. axum's own default (2 MB) would refuse a
//! documented request (a 50 MiB clip as a data URI is a ~67 MiB body).
//!
//! - aimlapi and fal submits: `video_url` may be a data URI (aimlapi's O1 schemas: "A
//!   HTTPS URL … or a data URI"; fal's CDN page: "Models also accept base64-encoded data
//!   URIs"), of a video up to 200 MB (fal's `OmniV2VEditInput.video_url`: "Max file size:
//!   200.0MB"; Kling: ≤200 MB), with up to 7 images of ≤10 MB each also inline.
//! - Kling creates: images as raw Base64 (≤10 MB, up to 7), the video by URL only.
//! - fal storage uploads: one file up to the largest input its endpoints take (200 MB).
//!
//! Neither provider documents a limit on the body itself; these caps are the simulator's.

const MIB: usize = 1024 * 1024;

/// The largest input video the providers document (fal, Kling: 200 MB).
pub(crate) const VIDEO_MAX: usize = 200 * MIB;
/// The largest input image (Kling, fal elements: 10 MB).
pub(crate) const IMAGE_MAX: usize = 10 * MIB;

/// Bytes of the Base64 text of `n` bytes.
const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// aimlapi and fal submits: a data-URI video, seven data-URI images and the JSON around.
pub(crate) const SUBMIT_MAX: usize = base64_len(VIDEO_MAX) + 7 * base64_len(IMAGE_MAX) + MIB;
/// Kling creates: seven raw Base64 images and the JSON around.
pub(crate) const KLING_MAX: usize = 7 * base64_len(IMAGE_MAX) + MIB;
/// fal storage: one file (a single upload, a multipart part, or a signed PUT).
pub(crate) const UPLOAD_MAX: usize = VIDEO_MAX;

#[cfg(test)]
mod unit {
    use super::*;

    const _: () = assert!(SUBMIT_MAX > base64_len(VIDEO_MAX) + 100);
    const _: () = assert!(KLING_MAX > 4 * base64_len(IMAGE_MAX));
    const _: () = assert!(SUBMIT_MAX < 400 * MIB, "bounded");

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_len(3), 4);
        assert_eq!(base64_len(4), 8);
    }
}
