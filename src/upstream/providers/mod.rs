//! One module per provider, each only wire mapping behind [`super::Upstream`]. A provider
//! too big for one file is a folder split by concern (client, wire mapping, errors,
//! events, tests).

pub mod aimlapi;
pub mod fal;
pub mod kling;
pub mod oxen;
