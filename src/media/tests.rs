//! The stored form of a spec, sources, markers and handles.

use super::*;
use crate::model::{BatchShared, Element, ModelKind, ProviderName};

const CLIP: &str = "data:video/mp4;base64,AAAAGGZ0eXBtcDQy";
const PNG: &str = "data:image/png;base64,iVBORw0KGgo=";

fn spec() -> BatchShared {
    let mut s = BatchShared::new("b", ProviderName::Aimlapi, ModelKind::Edit, CLIP);
    s.image_list = vec![PNG.into(), "https://x/i.png".into()];
    s.elements = vec![Element {
        frontal_image_url: PNG.into(),
        reference_image_urls: vec!["https://x/r.png".into()],
    }];
    s
}

#[test]
fn the_stored_form_names_each_payload_once_by_digest() {
    let (stored, blobs) = stored_form(&spec());
    assert_eq!(blobs.len(), 2, "the image named twice is stored once");
    let (clip, png) = (&blobs[0], &blobs[1]);
    assert_eq!(stored.video, format!("media:{}", clip.sha256()));
    assert_eq!(stored.image_list[0], format!("media:{}", png.sha256()));
    assert_eq!(stored.image_list[1], "https://x/i.png");
    assert_eq!(stored.elements[0].frontal_image_url, stored.image_list[0]);
    assert_eq!(
        stored.media[clip.sha256()],
        StoredMedia {
            bytes: 12,
            mime: "video/mp4".into(),
            object: None,
        }
    );
    assert!(stored.media_sources().all(|s| s.len() < 100));
    // The stored spec is small and reads back; a spec without payloads has no table.
    let json = serde_json::to_string(&stored).unwrap();
    assert_eq!(serde_json::from_str::<BatchShared>(&json).unwrap(), stored);
    let plain = BatchShared::new("b", ProviderName::Aimlapi, ModelKind::Edit, "https://x/v");
    assert!(!serde_json::to_string(&plain).unwrap().contains("media"));
}

#[test]
fn sources_and_markers_are_told_apart() {
    assert_eq!(Source::of("media:ab"), Source::Stored("ab"));
    assert_eq!(
        Source::of("DATA:video/mp4;base64,AA"),
        Source::Inline("DATA:video/mp4;base64,AA")
    );
    assert_eq!(Source::of("https://x"), Source::Url("https://x"));
    let blob = Arc::new(Blob::from_data_uri(CLIP).unwrap());
    let m = Media::Inline(blob.clone());
    let text = serde_json::to_value(&m).unwrap();
    let text = text.as_str().unwrap();
    assert_eq!(parse_marker(text), Some((blob.sha256(), Form::DataUri)));
    let raw = serde_json::to_value(m.raw_base64()).unwrap();
    assert_eq!(
        parse_marker(raw.as_str().unwrap()),
        Some((blob.sha256(), Form::Base64))
    );
    assert_eq!(
        parse_marker(&text.replace(marker_prefix(), "restyle-media-x-")),
        None
    );
    assert_eq!(
        serde_json::to_value(Media::from("https://x")).unwrap(),
        "https://x"
    );
}

#[test]
fn batch_media_maps_the_spec_and_counts_each_payload_once() {
    let s = spec();
    let blob = Arc::new(Blob::from_data_uri(PNG).unwrap());
    let resolved = HashMap::from([(PNG.to_owned(), Media::Inline(blob.clone()))]);
    let m = BatchMedia::from_spec(&s, &resolved);
    assert_eq!(m.video, Media::from(CLIP), "no entry: as written");
    assert_eq!(m.image_list[0], Media::Inline(blob.clone()));
    assert_eq!(m.elements[0].frontal_image_url, Media::Inline(blob.clone()));
    assert_eq!(m.blobs().len(), 1);
    assert_eq!(m.held_bytes(), blob.len() as u64);
}

#[test]
fn a_presigned_url_shows_without_its_query() {
    let m = Media::from("https://s3.example/b/src.mp4?X-Amz-Credential=AKIDX&X-Amz-Signature=f00d");
    let shown = format!("{m:?}");
    assert!(shown.contains("https://s3.example/b/src.mp4"), "{shown}");
    assert!(
        !shown.contains("AKIDX") && !shown.contains("f00d"),
        "{shown}"
    );
}
