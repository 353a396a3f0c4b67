//! Unit tests of the Kling mapping: the token, prompt translation, bodies and classes.

use super::answer::{answer_error, classify};
use super::token::Claims;
use super::*;
use crate::config::KlingMode;
use crate::model::ModelKind;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

/// HMAC-SHA256 by the `hmac` crate: an independent check of the token's signature.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn req(model: ModelKind) -> GenerationRequest {
    GenerationRequest {
        job_id: "b.00001".into(),
        client_id: "b.00001".into(),
        model,
        prompt: "the coat from @Image1".into(),
        video: "https://x/v.mp4".into(),
        image_list: vec!["https://x/i.png".into()],
        keep_audio: true,
        aspect_ratio: Some("9:16".into()),
        duration: Some(5),
        tier: None,
        elements: vec![],
    }
}

#[test]
fn hmac_matches_rfc_4231() {
    let h = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(h),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let long = hmac_sha256(
        &[0xaa; 131],
        b"Test Using Larger Than Block-Size Key - Hash Key First",
    );
    assert_eq!(
        hex::encode(long),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn jwt_has_the_documented_header_claims_and_signature() {
    let t = mint_jwt("ak", "sk", 1_000_000);
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3);
    let dec =
        |s: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap() };
    assert_eq!(dec(parts[0]), json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(
        dec(parts[1]),
        json!({"iss": "ak", "exp": 1_001_800, "nbf": 999_995})
    );
    let sig = hmac_sha256(b"sk", format!("{}.{}", parts[0], parts[1]).as_bytes());
    assert_eq!(parts[2], URL_SAFE_NO_PAD.encode(sig));

    // And as any JWT library reads it: HS256, typed JWT, the claims, the signature checked.
    let header = jsonwebtoken::decode_header(&t).unwrap();
    assert_eq!(
        (header.alg, header.typ.as_deref()),
        (Algorithm::HS256, Some("JWT"))
    );
    let mut v = Validation::new(Algorithm::HS256);
    // The token is from 1970: check the claims' values, not the clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_required_spec_claims(&["iss", "exp", "nbf"]);
    v.set_issuer(&["ak"]);
    let read = |secret: &[u8]| {
        jsonwebtoken::decode::<Claims>(&t, &DecodingKey::from_secret(secret).unwrap(), &v)
    };
    assert_eq!(
        read(b"sk").unwrap().claims,
        Claims {
            iss: "ak".into(),
            exp: 1_001_800,
            nbf: 999_995
        }
    );
    let forged = read(b"other").unwrap_err();
    assert_eq!(
        forged.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
}

#[test]
fn prompt_references_are_translated() {
    assert_eq!(
        translate_prompt("@Image1 wears @element2 in @Video1, mail a@b.c @Image @Imagex1"),
        "<<<image_1>>> wears <<<element_2>>> in <<<video_1>>>, mail a@b.c @Image @Imagex1"
    );
    assert_eq!(translate_prompt("@Image12's"), "<<<image_12>>>'s");
    assert_eq!(
        translate_prompt("@Image1st é@Image02"),
        "@Image1st é<<<image_2>>>"
    );
    assert_eq!(translate_prompt("no refs"), "no refs");
    assert_eq!(translate_prompt("trailing @"), "trailing @");
}

#[test]
fn edit_and_reference_bodies() {
    let e = request_body(&req(ModelKind::Edit), KlingMode::Pro).unwrap();
    assert_eq!(e["video_list"][0]["refer_type"], "base");
    assert_eq!(e["video_list"][0]["keep_original_sound"], "yes");
    assert_eq!(e["prompt"], "the coat from <<<image_1>>>");
    assert_eq!(e["image_list"], json!([{"image_url": "https://x/i.png"}]));
    assert_eq!(e["external_task_id"], "b.00001");
    assert!(e.get("duration").is_none() && e.get("aspect_ratio").is_none());
    let r = request_body(&req(ModelKind::Reference), KlingMode::Pro).unwrap();
    assert_eq!(r["video_list"][0]["refer_type"], "feature");
    assert_eq!(r["duration"], json!("5"));
    assert_eq!(r["aspect_ratio"], "9:16");
    let mut inline = req(ModelKind::Edit);
    inline.elements = vec![crate::model::Element {
        frontal_image_url: "https://x/f.png".into(),
        reference_image_urls: vec![],
    }];
    let err = request_body(&inline, KlingMode::Pro).unwrap_err();
    assert_eq!(err.class, ErrorClass::Job);
    assert!(err.message.contains("pre-registered element ids"));
}

#[test]
fn errors_are_classified_by_business_code() {
    assert_eq!(classify(401, Some(1004), false), ErrorClass::Account);
    assert_eq!(classify(429, Some(1102), true), ErrorClass::Account);
    assert_eq!(classify(429, Some(1302), true), ErrorClass::RATE_LIMITED);
    assert_eq!(classify(429, Some(1303), true), ErrorClass::RATE_LIMITED);
    assert_eq!(classify(400, Some(1301), true), ErrorClass::Job);
    assert_eq!(classify(500, Some(5000), true), ErrorClass::Ambiguous);
    assert_eq!(classify(504, Some(5002), true), ErrorClass::Ambiguous);
    assert_eq!(classify(503, Some(5001), true), ErrorClass::Retryable);
    assert_eq!(classify(500, Some(5000), false), ErrorClass::Retryable);
    assert_eq!(classify(200, Some(9999), true), ErrorClass::Ambiguous);
    assert_eq!(classify(200, Some(9999), false), ErrorClass::Retryable);
    let billing = answer_error(
        429,
        &json!({"code": 1102, "message": "m"}),
        "",
        true,
        "s",
        &[],
    );
    assert_eq!(
        (billing.class, billing.status),
        (ErrorClass::Account, Some(429))
    );
    assert!(billing.message.contains("code 1102"), "{}", billing.message);
    let rate = answer_error(
        429,
        &json!({"code": 1303, "message": "m"}),
        "",
        true,
        "s",
        &[],
    );
    assert_eq!(
        (rate.class, rate.status),
        (ErrorClass::RATE_LIMITED, Some(429))
    );
}

#[test]
fn the_mode_is_always_sent() {
    for (mode, word) in [(KlingMode::Pro, "pro"), (KlingMode::Std, "std")] {
        let b = request_body(&req(ModelKind::Edit), mode).unwrap();
        assert_eq!(b["mode"], word);
    }
}

#[test]
fn images_go_as_urls_or_raw_base64_never_as_data_uris() {
    use base64::engine::general_purpose::STANDARD;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-some-bytes";
    let raw = STANDARD.encode(png);
    let body = |image: &str| {
        let mut r = req(ModelKind::Edit);
        r.image_list = vec![image.to_string().into()];
        request_body(&r, KlingMode::Pro).map(|b| b["image_list"][0]["image_url"].clone())
    };
    assert_eq!(body(&format!("data:image/png;base64,{raw}")).unwrap(), raw);
    // Written by hand: any case, parameters, whitespace and missing padding; the
    // payload is decoded and sent as canonical Base64.
    let loose = format!(
        "DATA:image/png;name=a.png;base64,{}",
        raw.trim_end_matches('=')
    );
    let cut = loose.find(',').unwrap() + 10;
    let loose = format!("{} \n{}", &loose[..cut], &loose[cut..]);
    assert_eq!(body(&loose).unwrap(), raw);
    // URLs and raw Base64 are sent as they are.
    assert_eq!(body("https://x/i.png").unwrap(), "https://x/i.png");
    assert_eq!(body(&raw).unwrap(), raw);
    // A data URI that is no data URI at all is the job's error, never sent.
    let err = body("data:image/png;base64").unwrap_err();
    assert_eq!(err.class, ErrorClass::Job);
    assert!(err.message.contains("image_list[0]"), "{}", err.message);
}
